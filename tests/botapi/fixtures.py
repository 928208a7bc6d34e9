"""Shared pieces of the bot tests: sample files and database helpers."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
from sqlalchemy import select

from storage.db import session_scope
from storage.models import User


def png_bytes(size: int = 64, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def labelme_doc(
    image: bytes | None, image_name: str = "sample.png", size: int = 64, n: int = 3, label: str = "particle"
) -> dict[str, Any]:
    shapes: list[dict[str, Any]] = [
        {
            "label": "crop",
            "points": [[0, 0], [size - 1, size - 1]],
            "shape_type": "rectangle",
            "group_id": None,
            "flags": {},
        }
    ]
    for i in range(n):
        x, y = 8 + i * 18, 20
        shapes.append(
            {
                "label": label,
                "points": [[x, y], [x + 10, y], [x + 10, y + 10], [x, y + 10]],
                "shape_type": "polygon",
                "group_id": None,
                "flags": {},
            }
        )
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_name,
        "imageData": base64.b64encode(image).decode() if image is not None else None,
        "imageHeight": size,
        "imageWidth": size,
    }


def labelme_bytes(image: bytes | None, **kwargs: Any) -> bytes:
    return json.dumps(labelme_doc(image, **kwargs)).encode()


def user_row(url: str, telegram_id: int) -> dict[str, Any] | None:
    with session_scope(url) as session:
        user = session.scalar(select(User).where(User.telegram_id == telegram_id))
        if user is None:
            return None
        return {
            "id": user.id,
            "language": user.language,
            "preferences": dict(user.preferences or {}),
            "active_model_id": user.active_model_id,
            "nm_per_px": user.nm_per_px,
            "threshold": user.score_threshold,
        }


def rows(url: str, model: type, **where: Any) -> list[Any]:
    with session_scope(url) as session:
        stmt = select(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        found = list(session.scalars(stmt))
        for row in found:
            session.expunge(row)
        return found


def keyboard(call: Any) -> list[list[dict]]:
    """The inline keyboard of a recorded call, rows of buttons (PTB sends reply_markup as a JSON string
    in a form, as an object in a JSON body)."""
    markup = call.params.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return markup.get("inline_keyboard", [])


def buttons(call: Any) -> list[str]:
    """callback_data of every inline button of a recorded call."""
    return [b.get("callback_data") for row in keyboard(call) for b in row]
