"""The whole scripted user journey with real training: the bot (as `segbot run` builds it) against
the stand-in, the embedded queue and a real worker process: /start, /example sent back, Train with
the tiny preset, progress edits, the finished model, recognition of a new image with all four
outputs checked, a correction offered and queued as the next version, /forget_me."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import select

from storage.db import session_scope
from storage.migrate import upgrade
from storage.models import Job, TrainedModel, Upload, User
from tests.botapi.fixtures import buttons, rows, user_row
from tests.botapi.harness import BotApiStandIn, bot_settings, running_bot
from tests.botapi.harness import User as TgUser

ALICE = TgUser(3001, "Alice", "alice", "en")


def _scene(seed: int):
    from trainer.synthetic import synthetic_scene

    return synthetic_scene(seed=seed, size=(192, 192), n_particles=14, n_pits=3)


def _png(seed: int) -> bytes:
    from PIL import Image

    scene = _scene(seed)
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    return buffer.getvalue()


def _last_result(api, after: int):
    def find(calls):
        photo = next((c for c in calls[after:] if c.method == "sendPhoto" and c.chat_id == ALICE.id), None)
        if photo is None:
            return None
        group = next(
            (c for c in calls[after:] if c.method == "sendMediaGroup" and c.chat_id == ALICE.id), None
        )
        return (photo, group) if group else None

    return api.wait_for(find, timeout=240, what="the recognition result")


@pytest.mark.slow
def test_full_journey_with_a_real_worker(settings) -> None:
    # imported here (they load torch) yet plainly: a broken import fails the test, never skips it
    import inference.pipeline  # noqa: F401 - the worker's recognition
    import trainer.train  # noqa: F401 - the worker's training
    from jobqueue.worker import start_worker_process

    api = BotApiStandIn().start()
    bs = bot_settings(settings, api)
    upgrade(bs.database_url)
    worker = start_worker_process(bs, start_new_session=True)  # its own group: killable with its children
    try:
        with running_bot(bs, tick_interval=0.5):
            mark = api.mark()
            api.send_text(ALICE, "/start")
            api.wait_reply(ALICE.id, mark, "segbot")
            mark = api.mark()
            api.send_text(ALICE, "/example")
            example = api.wait_reply(ALICE.id, mark, methods=("sendDocument",))
            name, data = example.files["document"]
            mark = api.mark()
            api.send_document(ALICE, name, data)
            summary = api.wait_reply(ALICE.id, mark, "crop")
            assert buttons(summary) == ["train:go", "train:more", "train:opts"]
            # Options: 50 iterations of the tiny preset, then Start
            mark = api.mark()
            api.press(ALICE, summary.result, "train:opts")
            opts = api.wait_reply(ALICE.id, mark, "preset tiny")
            mark = api.mark()
            api.press(ALICE, opts.result, "opt:iters")
            api.wait_reply(ALICE.id, mark, "50 iterations", methods=("editMessageText",))
            # a CPU test cannot afford even 50 iterations: 2 (same path, the stored option is what counts)
            with session_scope(bs.database_url) as session:
                user = session.scalar(select(User).where(User.telegram_id == ALICE.id))
                user.preferences = {**user.preferences, "train_options": {"arch": "tiny", "iterations": 2}}
            mark = api.mark()
            api.press(ALICE, opts.result, "train:go")
            queued = api.wait_reply(ALICE.id, mark, "queued")
            done = api.wait_reply(ALICE.id, mark, "Model v1 is ready", timeout=300)
            progress = [
                c
                for c in api.calls[mark : api.calls.index(done)]
                if c.method == "editMessageText" and c.params.get("message_id") == queued.result["message_id"]
            ]
            assert progress, "no progress edits"
            assert any("%" in c.text for c in progress)
            assert user_row(bs.database_url, ALICE.id)["active_model_id"] is not None

            # recognition of a new image: overlay photo + LabelMe, CSV, histogram. A 2-iteration model
            # scores low: the lowest threshold keeps what it finds, so the outputs have objects to agree on
            mark = api.mark()
            api.send_text(ALICE, "/threshold 0.05")
            api.wait_reply(ALICE.id, mark, "0.05")
            mark = api.mark()
            api.send_document(ALICE, "new_image.png", _png(seed=11), caption="scale=2nm")
            api.wait_reply(ALICE.id, mark, "Recognition job")
            photo, group = _last_result(api, mark)
            assert photo.files["photo"][1].startswith(b"\x89PNG")
            assert "new_image.png" in photo.text
            n_caption = int(photo.text.split(":")[1].split()[0])
            noun = "object" if n_caption == 1 else "objects"  # the caption's plural form
            assert n_caption > 0 and f"{n_caption} {noun}" in photo.text and " nm" in photo.text, photo.text
            files = {fname: content for fname, content in group.files.values()}
            labelme = json.loads(files["new_image.json"])
            table = list(csv.DictReader(io.StringIO(files["new_image_objects.csv"].decode())))
            assert len(table) == n_caption == len(labelme["shapes"])
            assert files["new_image_hist.png"].startswith(b"\x89PNG")

            # correction: the returned LabelMe file, edited and sent back, is offered as training data
            # (the user outlines what the 2-iteration model missed: here the scene's true objects)
            labelme["shapes"] = [
                {
                    "label": inst.label,
                    "points": inst.polygon.tolist(),
                    "shape_type": "polygon",
                    "group_id": None,
                    "flags": {},
                }
                for inst in _scene(11).instances
            ] + [
                {
                    "label": "crop",
                    "points": [[0, 0], [191, 191]],
                    "shape_type": "rectangle",
                    "group_id": None,
                    "flags": {},
                }
            ]
            mark = api.mark()
            api.send_document(ALICE, "new_image_corrected.json", json.dumps(labelme).encode())
            offer = api.wait_reply(ALICE.id, mark, "corrected")
            (data_button,) = buttons(offer)
            assert data_button.startswith("corr:")
            mark = api.mark()
            api.press(ALICE, offer.result, data_button)
            api.wait_reply(ALICE.id, mark, "queued")
            train_jobs = [j for j in rows(bs.database_url, Job, kind="train")]
            assert len(train_jobs) == 2
            kinds = {u.id: u.kind for u in rows(bs.database_url, Upload)}
            assert sorted(kinds[i] for i in train_jobs[1].params["upload_ids"]) == ["correction", "labelme"]
            mark = api.mark()
            api.send_text(ALICE, "/cancel")
            api.wait_reply(ALICE.id, mark, "Cancelling")

            # /forget_me
            mark = api.mark()
            api.send_text(ALICE, "/forget_me")
            confirm = api.wait_reply(ALICE.id, mark, "undone")
            mark = api.mark()
            api.press(ALICE, confirm.result, "forget:yes")
            api.wait_reply(ALICE.id, mark, "deleted")
            time.sleep(0.5)
        assert user_row(bs.database_url, ALICE.id) is None
        assert rows(bs.database_url, TrainedModel) == [] and rows(bs.database_url, Upload) == []
        assert not any((bs.files_dir / "models").glob("u*/v*"))
    finally:
        worker.terminate()  # warm shutdown waits for a running job: kill after a while
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(15)
        api.stop()
