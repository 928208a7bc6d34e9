"""The Mini App's HTTP API, served for real (web.server.WebServer on a free port) over a migrated
SQLite database and the file store: every endpoint, who may call it, and bad bodies that must be
refused with a clear message while nothing is stored."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from storage.db import session_scope
from storage.files import FileStore
from storage.migrate import upgrade
from storage.models import Notice, Result, Upload, User
from tests.botapi.fixtures import rows
from tests.conftest import REPO
from tests.webapp_helpers import HEIGHT, NM_PER_PX, WIDTH, init_data, stored_result
from web.links import make_link
from web.server import WebServer

TOKEN = "123456:TEST-token_secret"
ALICE, BOB, STRANGER = 5001, 5002, 5003


def _environment(data_dir: Path, tmp: Path) -> tuple[Any, Any, Any]:
    from core.settings import load_settings

    s = load_settings(
        data_dir=data_dir,
        telegram_bot_token=TOKEN,
        web_max_body_kb=64,
        database_url_raw=f"sqlite:///{data_dir / 'segbot.db'}",
        access_mode="open",
    )
    s.ensure_dirs()
    upgrade(s.database_url)
    return s, stored_result(s, tmp, ALICE), stored_result(s, tmp, BOB, language="ru", username="bob")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One database and server for the tests that must leave everything as it was (they check it)."""
    tmp = tmp_path_factory.mktemp("webapi")
    s, alice, bob = _environment(tmp / "data", tmp)
    with WebServer(s, port=0) as running:
        yield s, (alice, bob), running


@pytest.fixture
def ws(shared):
    return shared[0]


@pytest.fixture
def scenes(shared):
    return shared[1]


@pytest.fixture
def server(shared):
    return shared[2]


@pytest.fixture
def fresh(settings, tmp_path):
    """A database and server of this test's own (for a test that stores something)."""
    s, alice, bob = _environment(settings.data_dir, tmp_path)
    with WebServer(s, port=0) as running:
        yield s, (alice, bob), running


def client(server, telegram_id: int | None = ALICE, **kwargs) -> httpx.Client:
    headers = (
        {} if telegram_id is None else {"Authorization": "tma " + init_data(TOKEN, telegram_id, **kwargs)}
    )
    return httpx.Client(base_url=server.url, headers=headers, timeout=20)


def stored_counts(url: str) -> tuple[int, int]:
    return len(rows(url, Upload)), len(rows(url, Notice))


def test_result_objects_scores_and_scale(server, scenes) -> None:
    alice, _ = scenes
    with client(server) as c:
        view = c.get(f"/api/results/{alice.result_id}").json()
    assert view["result"] == {
        "id": alice.result_id,
        "name": "cells.png",
        "width": WIDTH,
        "height": HEIGHT,
        "nm_per_px": NM_PER_PX,
    }
    assert view["language"] == "en" and view["classes"] == ["particle", "rod"]
    objects = view["objects"]
    assert [o["id"] for o in objects] == list(range(1, len(alice.instances) + 1))
    assert [o["label"] for o in objects] == [i.label for i in alice.instances]
    assert [o["score"] for o in objects] == [i.score for i in alice.instances]  # from the stored LabelMe
    first = objects[0]
    assert first["d_px"] == pytest.approx(24, rel=0.02) and len(first["points"]) == 24


def test_image_me_and_static(server, scenes) -> None:
    alice, _ = scenes
    with client(server) as c:
        png = c.get(f"/api/results/{alice.result_id}/image")
        me = c.get("/api/me").json()
        page = c.get("/")
        script = c.get("/static/app.js")
        escape = c.get("/static/../app.py")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (WIDTH, HEIGHT)
    assert me == {
        "language": "en",
        "results": [
            {
                "id": alice.result_id,
                "name": "cells.png",
                "n_objects": 13,
                "created_at": me["results"][0]["created_at"],
            }
        ],
    }
    assert page.status_code == 200 and "static/app.js" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from elsewhere
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "tgWebAppData" in script.text
    assert escape.status_code in (403, 404)


def test_the_page_texts_come_from_the_catalogs(server) -> None:
    """Public like the page itself (it needs them before it knows who opened it): every language,
    plural messages as forms per CLDR category for Intl.PluralRules on the page."""
    with client(server, telegram_id=None) as c:
        response = c.get("/api/texts")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    texts = response.json()
    assert set(texts) == {"en", "ru"} and set(texts["en"]) == set(texts["ru"])
    assert texts["en"]["polygon"] == "Polygon" and texts["ru"]["polygon"] == "Контур"
    assert texts["en"]["points"] == {"count": "n", "forms": {"one": "{n} point", "other": "{n} points"}}
    assert texts["ru"]["points"] == {
        "count": "n",
        "forms": {"one": "{n} точка", "few": "{n} точки", "many": "{n} точек", "other": "{n} точек"},
    }


def callers(not_yours: int) -> list[tuple[str, int, str]]:
    """(who, HTTP status, part of the error) for everyone but Alice: no, forged and expired initData,
    Bob (`not_yours`: 403 for a result, 404 for an image) and a stranger who never talked to the bot."""
    return [
        ("nobody", 401, "no Telegram login data"),
        ("forged", 401, "not signed by this bot"),
        ("expired", 401, "expired"),
        ("bob", not_yours, "not yours"),
        ("stranger", 403, "/start"),
    ]


def caller_client(server, ws, who: str) -> httpx.Client:
    if who == "nobody":
        return client(server, None)
    if who == "forged":
        forged = "tma " + init_data("999:OTHER", ALICE)
        return httpx.Client(base_url=server.url, headers={"Authorization": forged})
    if who == "expired":
        return client(server, ALICE, auth_date=time.time() - ws.webapp_auth_max_age_s - 5)
    return client(server, BOB if who == "bob" else STRANGER)


def assert_refused(answers: list[httpx.Response], status: int, reason: str) -> None:
    for answer in answers:
        assert answer.status_code == status, answer.text
        assert reason in answer.json()["error"]


@pytest.mark.parametrize(("who", "status", "reason"), callers(not_yours=403))
def test_only_alice_reaches_alices_result(server, scenes, ws, who, status, reason) -> None:
    alice, _ = scenes
    c = caller_client(server, ws, who)
    before = stored_counts(ws.database_url)
    rid = alice.result_id
    with c:
        answers = [
            c.get(f"/api/results/{rid}"),
            c.get(f"/api/results/{rid}/image"),
            c.post(f"/api/results/{rid}/links"),
            c.post(f"/api/results/{rid}/correction", json={"objects": [{"id": 1, "label": "particle"}]}),
        ]
        if who in ("nobody", "forged", "expired"):
            answers.append(c.get("/api/me"))
    assert_refused(answers, status, reason)
    assert stored_counts(ws.database_url) == before


def test_a_result_id_that_is_not_hers_or_does_not_exist(server, scenes, ws) -> None:
    alice, bob = scenes
    before = stored_counts(ws.database_url)
    with client(server) as c:
        for rid in (bob.result_id, 999_999):
            for answer in (
                c.get(f"/api/results/{rid}"),
                c.post(f"/api/results/{rid}/correction", json={"objects": []}),
            ):
                assert answer.status_code == 403
                assert answer.json()["error"] == "This result is not yours (or no longer exists)."
        assert c.get("/api/results/abc").status_code == 404
    assert stored_counts(ws.database_url) == before


def test_allowlist_mode_refuses_those_not_on_it(ws, scenes) -> None:
    from core.settings import load_settings

    closed = load_settings(
        data_dir=ws.data_dir, telegram_bot_token=TOKEN, access_mode="allowlist", allowed_users=str(BOB)
    )
    with WebServer(closed, port=0) as running, client(running) as c:
        answer = c.get(f"/api/results/{scenes[0].result_id}")
    assert answer.status_code == 403 and "private" in answer.json()["error"]


def test_a_saved_correction_is_an_upload_and_a_notice(fresh) -> None:
    ws, (alice, _), server = fresh
    edits = [
        {"id": k, "label": "rod" if k == 3 else alice.instances[k - 1].label}
        for k in range(1, 14)
        if k not in (2, 5)
    ]
    edits.append(
        {"label": "rod", "shape_type": "polygon", "points": [[150, 110], [180, 110], [180, 125], [150, 125]]}
    )
    edits.append({"label": "particle", "shape_type": "circle", "points": [[300, 20], [308, 20]]})
    with client(server) as c:
        answer = c.post(f"/api/results/{alice.result_id}/correction", json={"objects": edits})
    assert answer.status_code == 200, answer.text
    saved = answer.json()
    assert (saved["removed"], saved["added"], saved["relabelled"], saved["n_objects"]) == (2, 2, 1, 13)
    (upload,) = rows(ws.database_url, Upload, kind="correction")
    assert upload.id == saved["upload_id"] and upload.corrects_result_id == alice.result_id
    assert upload.user_id == alice.user_id and upload.summary["n_objects"] == 13
    doc = json.loads(FileStore(ws.files_dir).read_bytes(upload.sha256))
    labels = [s["label"] for s in doc["shapes"]]
    assert labels.count("rod") == 5 and labels.count("particle") == 8
    assert doc["shapes"][-1]["shape_type"] == "circle" and doc["imageData"]
    kept_first = doc["shapes"][0]
    assert kept_first["description"] == "score=0.9800"  # scores stay with kept objects
    (notice,) = rows(ws.database_url, Notice)
    assert notice.kind == "correction_saved" and notice.user_id == alice.user_id and notice.sent_at is None
    assert notice.payload == {
        "result_id": alice.result_id,
        "image_name": "cells.png",
        "n_objects": 13,
        "removed": 2,
        "added": 2,
        "relabelled": 1,
        "upload_id": upload.id,
    }
    with session_scope(ws.database_url) as session:
        assert session.get(User, alice.user_id).preferences["pending_uploads"] == [upload.id]


SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20]]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"objects": {}}', "must be a JSON object"),
        ({"objects": [7]}, "object #1 is not a JSON object"),
        ({"objects": [{"id": 1}]}, "no class name"),
        ({"objects": [{"id": 1, "label": "  "}]}, "no class name"),
        ({"objects": [{"id": 1, "label": "Crop"}]}, "kept for crop rectangles"),
        ({"objects": [{"id": 0, "label": "particle"}]}, "id 0 is not an object"),
        ({"objects": [{"id": 14, "label": "particle"}]}, "id 14 is not an object"),
        ({"objects": [{"id": True, "label": "particle"}]}, "is not an object of this result"),
        ({"objects": [{"id": "1", "label": "particle"}]}, "is not an object of this result"),
        ({"objects": [{"id": 1, "label": "p"}, {"id": 1, "label": "p"}]}, "listed twice"),
        ({"objects": [{"id": 1, "label": "p", "points": SQUARE}]}, "keeps its outline"),
        ({"objects": [{"label": "p", "shape_type": "star", "points": SQUARE}]}, "'polygon' or 'circle'"),
        ({"objects": [{"label": "p", "points": SQUARE[:2]}]}, "at least 3 points"),
        ({"objects": [{"label": "p", "points": [[1, 2], [3, "x"], [5, 6]]}]}, "finite numbers"),
        ({"objects": [{"label": "p", "points": [[1, 2, 3], [3, 4], [5, 6]]}]}, "finite numbers"),
        ({"objects": [{"label": "p", "shape_type": "circle", "points": SQUARE}]}, "a circle is"),
        ({"objects": [{"label": "p", "points": "10,10 20,20"}]}, "list of at most"),
        ({"objects": [{"label": "p", "points": [[0, 0]] * 2001}]}, "list of at most"),
        ({"objects": [{"label": "p"}] * 20_001}, None),  # over the body limit: 413 first
        # the LabelMe validator's own findings
        ({"objects": [{"label": "p", "points": [[10, 10], [20, 20], [30, 30]]}]}, "zero area"),
        (
            {"objects": [{"label": "p", "points": [[500, 500], [520, 500], [520, 520]]}]},
            "outside the 320x240",
        ),
        ({"objects": [{"label": "p", "points": SQUARE}, {"label": "p", "points": SQUARE}]}, "exact copy"),
        ({"objects": [{"label": "x" * 101, "points": SQUARE}]}, "unusable label"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_stored(server, scenes, ws, body, reason) -> None:
    alice, _ = scenes
    before = stored_counts(ws.database_url)
    blobs = set(FileStore(ws.files_dir).iter_digests())
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with client(server) as c:
        answer = c.post(
            f"/api/results/{alice.result_id}/correction",
            content=content,
            headers={"Content-Type": "application/json"},
        )
    if reason is None:
        assert answer.status_code == 413 and "larger than 64 KB" in answer.json()["error"]
    else:
        assert answer.status_code == 400, answer.text
        assert reason in answer.json()["error"]
    assert stored_counts(ws.database_url) == before
    assert set(FileStore(ws.files_dir).iter_digests()) == blobs



def test_a_refused_correction_says_why_in_the_users_language(server, scenes, ws) -> None:
    """What the LabelMe reader refuses in a correction (a label no class can have) is said in the
    caller's language; the request's own shape errors are for the page's developer, in English."""
    _, bob = scenes
    before = stored_counts(ws.database_url)
    with client(server, BOB) as c:
        bad_label = c.post(f"/api/results/{bob.result_id}/correction",
                           json={"objects": [{"label": "x" * 101, "points": SQUARE}]})
        not_json = c.post(f"/api/results/{bob.result_id}/correction", json=["objects"])
    assert bad_label.status_code == 400 and "непригодную метку" in bad_label.json()["error"], bad_label.text
    assert not_json.status_code == 400 and "JSON object" in not_json.json()["error"], not_json.text
    assert stored_counts(ws.database_url) == before

def test_an_oversized_body_is_refused_before_it_is_read(server, scenes, ws) -> None:
    before = stored_counts(ws.database_url)
    with client(server) as c:
        answer = c.post(f"/api/results/{scenes[0].result_id}/correction", content=b" " * (65 * 1024))
    assert answer.status_code == 413 and answer.json() == {"error": "The request is larger than 64 KB."}
    assert stored_counts(ws.database_url) == before


def test_downloads_by_signed_link(server, scenes, ws) -> None:
    alice, bob = scenes
    store = FileStore(ws.files_dir)
    with client(server) as c:
        got = c.post(f"/api/results/{alice.result_id}/links").json()
    assert got["labelme"]["name"] == "cells.json" and got["csv"]["name"] == "cells_objects.csv"
    with httpx.Client(base_url=server.url) as plain:  # no Authorization: the link is the permission
        for role in ("labelme", "csv"):
            answer = plain.get(got[role]["url"])
            assert answer.status_code == 200
            assert "attachment" in answer.headers["content-disposition"]
            (result,) = rows(ws.database_url, Result, id=alice.result_id)
            assert answer.content == store.read_bytes(result.files[role])
        csv_lines = plain.get(got["csv"]["url"]).text.splitlines()
        assert csv_lines[0].startswith("id,class,score") and len(csv_lines) == 14
        tampered = got["csv"]["url"][:-1] + ("0" if got["csv"]["url"][-1] != "0" else "1")
        expired = make_link(TOKEN, alice.user_id, alice.result_id, "csv", now=time.time() - 3600)
        bobs_link_to_alice = make_link(TOKEN, bob.user_id, alice.result_id, "csv")
        other_role = got["csv"]["url"].replace("/csv/", "/summary/")
        for url, status in ((tampered, 403), (expired, 403), (bobs_link_to_alice, 403), (other_role, 403)):
            answer = plain.get(url)
            assert answer.status_code == status, (url, answer.text)
            assert "error" in answer.json()


def test_segbot_web_serves_the_page(ws, scenes, tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SEGBOT_DATA_DIR": str(ws.data_dir),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "SEGBOT_WEB_PORT": str(port),
        "SEGBOT_WEBAPP_URL": "http://127.0.0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "segbot", "web"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/results/{scenes[0].result_id}",
                    headers={"Authorization": "tma " + init_data(TOKEN, ALICE)},
                )
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "segbot web did not start"
                time.sleep(0.3)
        assert answer.status_code == 200 and len(answer.json()["objects"]) == 13
    finally:
        process.terminate()
        process.wait(20)


def test_segbot_web_without_a_token_says_so(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    env.update(PYTHONPATH=str(REPO), SEGBOT_DATA_DIR=str(tmp_path / "d"))
    done = subprocess.run(
        [sys.executable, "-m", "segbot", "web"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "TELEGRAM_BOT_TOKEN" in done.stderr


def test_a_big_image_reaches_the_page_smaller(server, scenes, monkeypatch) -> None:
    from web import review

    monkeypatch.setattr(review, "MAX_IMAGE_SIDE", 160)  # phones cap canvas sizes; 4096 px in use
    with client(server) as c:
        png = c.get(f"/api/results/{scenes[0].result_id}/image")
        view = c.get(f"/api/results/{scenes[0].result_id}").json()
    assert Image.open(io.BytesIO(png.content)).size == (160, 120)
    assert (view["result"]["width"], view["result"]["height"]) == (WIDTH, HEIGHT)  # outlines in full px
