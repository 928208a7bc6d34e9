"""The Mini App's side of the chat, with the real bot against the stand-in: no Review button
without SEGBOT_WEBAPP_URL, Review buttons under a result and in /stats with it, and the outbox's
"Correction saved" notice in the user's language with the same Train button as a corrected file."""

from __future__ import annotations

import json

import pytest

from storage.db import session_scope
from storage.migrate import upgrade
from storage.models import Notice
from storage.notices import LabelsSavedNotice, add_user_notice
from tests.botapi.fixtures import buttons, keyboard
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import bot_settings, running_bot
from tests.webapp_helpers import stored_image, stored_result

ALICE = TgUser(7001, "Alice", "alice", "en")
BOB = TgUser(7002, "Боб", "bob", "ru")
URL = "https://segbot.example.org"


def _deliver_result(api, bs, scene, user):
    mark = api.mark()
    with session_scope(bs.database_url) as session:
        session.add(
            Notice(user_id=scene.user_id, job_id=scene.predict_job_id, kind="predict_done", payload={})
        )
    return api.wait_reply(user.id, mark, "cells.png", methods=("sendPhoto",), timeout=20)


def test_without_a_webapp_url_the_chat_is_as_before(settings, api, tmp_path) -> None:
    bs = bot_settings(settings, api)
    upgrade(bs.database_url)
    scene = stored_result(bs, tmp_path, ALICE.id)
    with running_bot(bs, tick_interval=0.3):
        photo = _deliver_result(api, bs, scene, ALICE)
        mark = api.mark()
        api.send_text(ALICE, "/stats")
        stats = api.wait_reply(ALICE.id, mark, "Pooled over 1 image")
    assert "reply_markup" not in photo.params and "reply_markup" not in stats.params


def test_review_buttons_under_a_result_and_in_stats(settings, api, tmp_path) -> None:
    bs = bot_settings(settings, api, webapp_url=URL + "/")
    upgrade(bs.database_url)
    scene = stored_result(bs, tmp_path, BOB.id, language="ru", username="bob")
    with running_bot(bs, tick_interval=0.3):
        photo = _deliver_result(api, bs, scene, BOB)
        mark = api.mark()
        api.send_text(BOB, "/stats")
        stats = api.wait_reply(BOB.id, mark, "13")  # the pooled count
    assert keyboard(photo) == [
        [{"text": "Проверить", "web_app": {"url": f"{URL}/?result={scene.result_id}"}}]
    ]
    assert keyboard(stats) == [
        [{"text": "Проверить cells.png", "web_app": {"url": f"{URL}/?result={scene.result_id}"}}]
    ]


def test_label_buttons_under_a_kept_image_result_and_in_label(settings, api, tmp_path) -> None:
    """Label opens the image of a result (its crops join the training data) and /label lists her
    images; the page's labels_saved notice is the chat's usual upload summary with Train now."""
    bs = bot_settings(settings, api, webapp_url=URL)
    upgrade(bs.database_url)
    scene = stored_result(bs, tmp_path, BOB.id, language="ru", username="bob")
    image_id = stored_image(bs, scene)
    summary = {"name": "cells_labels.json", "width": 320, "height": 240, "whole_image": False, "n_crops": 1,
               "crops": [{"x0": 0, "y0": 0, "x1": 100, "y1": 80, "width": 100, "height": 80, "n_objects": 3,
                          "counts": {"particle": 3}, "mean_d_px": 20.0}],
               "n_objects": 3, "counts": {"particle": 3}, "per_class_mean_d_px": {"particle": 20.0},
               "mean_d_px": 20.0, "ignored_outside_crops": 0, "notes": []}
    with running_bot(bs, tick_interval=0.3):
        photo = _deliver_result(api, bs, scene, BOB)
        mark = api.mark()
        api.send_text(BOB, "/label")
        listed = api.wait_reply(BOB.id, mark, "Разметьте")
        mark = api.mark()
        with session_scope(bs.database_url) as session:
            add_user_notice(session, scene.user_id, LabelsSavedNotice(
                upload_id=99, image_upload_id=image_id, name="cells_labels.json", summary=summary,
                pending_count=1))
        saved = api.wait_reply(BOB.id, mark, "cells_labels.json", timeout=20)
    assert keyboard(photo) == [
        [
            {"text": "Проверить", "web_app": {"url": f"{URL}/?result={scene.result_id}"}},
            {"text": "Разметить", "web_app": {"url": f"{URL}/?image={image_id}"}},
        ],
        [{"text": "Разметить, где модель сомневается",
          "web_app": {"url": f"{URL}/?image={image_id}&suggest=1"}}],
    ]
    assert keyboard(listed) == [
        [{"text": "Разметить cells.png", "web_app": {"url": f"{URL}/?image={image_id}"}}]
    ]
    assert "1 кроп" in saved.text and "3 объекта" in saved.text
    assert buttons(saved)[0] == "train:go"


@pytest.mark.parametrize(
    ("user", "text"),
    [
        (
            ALICE,
            "Correction saved: 5 objects removed, 3 objects added, 2 objects relabelled. "
            "Train the next version?\ncells.png: 11 objects now.",
        ),
        (
            BOB,
            "Исправление сохранено: удалено 5 объектов, добавлено 3 объекта, у 2 объектов сменён класс. "
            "Обучить следующую версию?\ncells.png: теперь 11 объектов.",
        ),
    ],
)
def test_correction_saved_notice_in_the_users_language(settings, api, tmp_path, user, text) -> None:
    bs = bot_settings(settings, api)
    upgrade(bs.database_url)
    scene = stored_result(bs, tmp_path, user.id, language=user.language_code, username=user.username)
    payload = {
        "upload_id": 42,
        "result_id": scene.result_id,
        "image_name": "cells.png",
        "n_objects": 11,
        "removed": 5,
        "added": 3,
        "relabelled": 2,
    }
    with running_bot(bs, tick_interval=0.3):
        mark = api.mark()
        with session_scope(bs.database_url) as session:
            session.add(Notice(user_id=scene.user_id, job_id=None, kind="correction_saved", payload=payload))
        message = api.wait_reply(user.id, mark, text.split("(")[0], timeout=20)
    assert message.text == text
    assert buttons(message) == ["corr:42"]


def test_a_corrected_file_sent_back_takes_the_same_intake(settings, api, tmp_path) -> None:
    """The chat's path into intake.labels: the result's own LabelMe file, edited and sent back, is
    matched to the result (by its image) and offered for the next version."""
    from storage.files import FileStore
    from storage.models import Result, Upload
    from tests.botapi.fixtures import rows

    bs = bot_settings(settings, api)
    upgrade(bs.database_url)
    scene = stored_result(bs, tmp_path, ALICE.id)
    (result,) = rows(bs.database_url, Result, id=scene.result_id)
    doc = json.loads(FileStore(bs.files_dir).read_bytes(result.files["labelme"]))
    doc["shapes"] = doc["shapes"][2:]
    with running_bot(bs, tick_interval=0.3):
        mark = api.mark()
        api.send_document(ALICE, "cells_fixed.json", json.dumps(doc).encode())
        offer = api.wait_reply(ALICE.id, mark, "corrected version of result 'cells.png' (13 objects)")
    (upload,) = rows(bs.database_url, Upload, kind="correction")
    assert upload.corrects_result_id == scene.result_id and upload.summary["n_objects"] == 11
    assert buttons(offer) == [f"corr:{upload.id}"]


@pytest.mark.slow
def test_segbot_run_serves_the_page_beside_the_bot(settings, api) -> None:
    """`segbot run` with SEGBOT_WEBAPP_URL: the bot polls and the page answers in the same process;
    SIGINT stops both."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upgrade(settings.database_url)
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "TELEGRAM_API_BASE_FILE_URL": api.base_file_url,
        "SEGBOT_DATA_DIR": str(settings.data_dir),
        "SEGBOT_WEBAPP_URL": f"http://127.0.0.1:{port}",
        "SEGBOT_WEB_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "segbot", "run", "--no-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        mark = api.mark()
        api.send_text(ALICE, "/start")
        assert "segbot" in api.wait_reply(ALICE.id, mark, timeout=60).text
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the page is not served"
                time.sleep(0.2)
        assert page.status_code == 200 and "static/app.js" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/me").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-2000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
