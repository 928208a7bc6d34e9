"""Shared pieces of the Mini App tests: a stored recognition result with its whole history (the
training upload, train job, model v1, predict job), signed initData, a running web server."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from annotations.model import Instance
from core.settings import Settings
from outputs.files import write_outputs
from storage.db import session_scope
from storage.files import FileStore
from storage.models import Job, Result, TrainedModel, Upload, User
from tests.botapi.fixtures import labelme_bytes, png_bytes
from web.auth import sign

WIDTH, HEIGHT = 320, 240
NM_PER_PX = 2.0


@dataclass
class Scene:
    user_id: int
    telegram_id: int
    result_id: int
    training_upload_id: int
    model_id: int
    predict_job_id: int
    instances: list[Instance]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)])


def scene_instances() -> list[Instance]:
    """Ten particles and three rods, well apart, scores from 0.35 to 0.98."""
    out = []
    for k in range(10):
        cx, cy = 30 + (k % 5) * 62, 45 + (k // 5) * 80
        out.append(
            Instance("particle", ellipse(cx, cy, 12 + k % 3 * 3, 12 + k % 3 * 3), round(0.98 - 0.06 * k, 2))
        )
    for k in range(3):
        out.append(Instance("rod", ellipse(60 + k * 95, 205, 26, 8), round(0.9 - 0.2 * k, 2)))
    return out


def scene_image(instances: list[Instance]) -> np.ndarray:
    """A dark noisy field with bright blobs where the objects are (so a screenshot looks real)."""
    rng = np.random.default_rng(5)
    image = rng.normal(45, 12, (HEIGHT, WIDTH)).clip(0, 255)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for inst in instances:
        (x0, y0), (x1, y1) = inst.polygon.min(axis=0), inst.polygon.max(axis=0)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        image[inside] = 190 + rng.normal(0, 15, inside.sum())
    grey = image.clip(0, 255).astype(np.uint8)
    return np.stack([grey] * 3, axis=-1)


def stored_result(
    settings: Settings, tmp: Path, telegram_id: int, language: str = "en", username: str | None = "alice"
) -> Scene:
    """A user whose model v1 recognised one image: every row and file a real run leaves."""
    store = FileStore(settings.files_dir)
    instances = scene_instances()
    out = tmp / f"outputs-{telegram_id}"
    written = write_outputs(
        out, "cells", scene_image(instances), instances, nm_per_px=NM_PER_PX, image_name="cells.png"
    )
    files = {role: store.put_file(path) for role, path in written.items()}
    summary = json.loads(Path(written["summary"]).read_text())
    training = labelme_bytes(png_bytes(64), n=3)
    with session_scope(settings.database_url) as session:
        user = User(telegram_id=telegram_id, username=username, language=language, preferences={})
        session.add(user)
        session.flush()
        upload = Upload(
            user_id=user.id,
            kind="labelme",
            original_name="train.json",
            sha256=store.put_bytes(training),
            size=len(training),
            summary={},
        )
        session.add(upload)
        session.flush()
        train = Job(
            user_id=user.id,
            kind="train",
            state="succeeded",
            params={"upload_ids": [upload.id], "options": {"arch": "tiny", "iterations": 2}},
        )
        session.add(train)
        session.flush()
        model = TrainedModel(
            user_id=user.id,
            version=1,
            status="ready",
            job_id=train.id,
            options={"arch": "tiny", "iterations": 2},
        )
        session.add(model)
        session.flush()
        user.active_model_id = model.id
        predict = Job(
            user_id=user.id,
            kind="predict",
            state="succeeded",
            model_id=model.id,
            params={"model_id": model.id},
            chat_id=telegram_id,
        )
        session.add(predict)
        session.flush()
        result = Result(
            job_id=predict.id, user_id=user.id, image_name="cells.png", files=files, summary=summary
        )
        session.add(result)
        session.flush()
        return Scene(user.id, telegram_id, result.id, upload.id, model.id, predict.id, instances)


def stored_unsure(settings: Settings, scene: Scene, guesses: list[Instance]) -> None:
    """The result's detections under the threshold, stored as the predict job stores them."""
    from annotations.suggest import unsure_json

    with session_scope(settings.database_url) as session:
        result = session.get(Result, scene.result_id)
        stored = FileStore(settings.files_dir).put_bytes(unsure_json(guesses))
        result.files = {**result.files, "unsure": stored}


def init_data(
    token: str,
    telegram_id: int,
    *,
    auth_date: float | None = None,
    language: str = "en",
    username: str = "alice",
    **extra: str,
) -> str:
    """initData as Telegram builds it for this bot token."""
    fields = {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps(
            {"id": telegram_id, "first_name": "Alice", "username": username, "language_code": language},
            separators=(",", ":"),
        ),
        "auth_date": str(int(time.time() if auth_date is None else auth_date)),
        **extra,
    }
    fields["hash"] = sign(fields, token)
    return urlencode(fields)


def stored_image(settings: Settings, scene: Scene, *, link_result: bool = True,
                 missed: tuple[Instance, ...] = ()) -> int:
    """The scene's image as the user sent it (an image upload), the image of her result when
    `link_result`: what the Label button opens; `missed`: more particles on it, which the result
    lacks. Its id."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(scene_image([*scene.instances, *missed])).save(buffer, format="PNG")
    data = buffer.getvalue()
    store = FileStore(settings.files_dir)
    with session_scope(settings.database_url) as session:
        upload = Upload(user_id=scene.user_id, kind="image", original_name="cells.png",
                        sha256=store.put_bytes(data), size=len(data), summary={})
        session.add(upload)
        session.flush()
        if link_result:
            session.get(Result, scene.result_id).upload_id = upload.id
        return upload.id
