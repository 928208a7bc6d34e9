"""End to end: the real PTB Application (bot.app.build_application, as `segbot run` builds it)
polling the Bot API stand-in over HTTP: commands, uploads, buttons, access, isolation, forget."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from annotations.labelme import read_labelme
from bot import accounts
from core.errors import InputError
from imaging.images import read_image
from storage.db import session_scope
from storage.files import FileStore
from storage.migrate import upgrade
from storage.models import Dataset, Job, TrainedModel, Upload, User
from tests.botapi.fixtures import buttons, labelme_bytes, png_bytes, rows, user_row
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import bot_settings, running_bot

CORPUS = Path(__file__).resolve().parent / "corpus"
ACK = ("Checking", "Проверяю")
ALICE = TgUser(1001, "Alice", "alice", "en")
BORIS = TgUser(1002, "Boris", "boris", "ru")


def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _send(api, user, text, contains=None, timeout=10.0,
          methods=("sendMessage", "sendDocument", "sendPhoto", "sendMediaGroup")):
    """The answer to a text: a message or a file, never a progress message's edit meanwhile."""
    mark = api.mark()
    api.send_text(user, text)
    return api.wait_reply(user.id, mark, contains, methods=methods, timeout=timeout)


def _doc(api, user, name, data, contains=None, **kw):
    """Send a file; the bot's answer (it first says "Checking…", then edits that message)."""
    mark = api.mark()
    api.send_document(user, name, data, **kw)
    return api.wait_reply(user.id, mark, contains, skip=ACK)


def _press(api, user, call, data, contains=None, methods=("sendMessage", "editMessageText")):
    mark = api.mark()
    message = call.result if isinstance(call.result, dict) else {}
    api.press(user, message, data)
    return api.wait_reply(user.id, mark, contains, methods=methods)


def _give_ready_model(bs, user) -> int:
    """A ready model v1 for `user`, made their active one (as if trained); its id."""
    row = user_row(bs.database_url, user.id)
    with session_scope(bs.database_url) as session:
        model = TrainedModel(user_id=row["id"], version=1, status="ready")
        session.add(model)
        session.flush()
        session.get(User, row["id"]).active_model_id = model.id
        return model.id


def test_start_help_example_and_languages(bs, api) -> None:
    def handled() -> float:
        return REGISTRY.get_sample_value("segbot_update_latency_seconds_count") or 0.0

    before = handled()
    with running_bot(bs):
        start = _send(api, ALICE, "/start", "segbot")
        assert "crop" in start.text and "/example" in start.text
        assert "Commands" in _send(api, ALICE, "/help").text
        example = _send(api, ALICE, "/example")
        assert example.method == "sendDocument"
        name, data = example.files["document"]
        assert name.endswith(".json")
        ann = read_labelme(data, name=name)  # a valid sample the user can forward back
        assert len(ann.instances) >= 5 and ann.crops
        # Telegram's language_code picks Russian; /lang switches
        assert "Привет" in _send(api, BORIS, "/start").text
        menu = _send(api, BORIS, "/lang")
        assert set(buttons(menu)) == {"lang:en", "lang:ru"}
        assert "English" in _press(api, BORIS, menu, "lang:en").text
        assert "Hi!" in _send(api, BORIS, "/start").text
        assert "русский" in _send(api, ALICE, "/lang ru").text
    assert user_row(bs.database_url, ALICE.id)["language"] == "ru"
    assert user_row(bs.database_url, BORIS.id)["language"] == "en"
    assert handled() - before >= 8  # every update's handling time is observed
    assert {c["command"] for c in api.commands} >= {"start", "help", "train", "models"}
    about = {c["command"]: c["description"] for c in api.commands}
    about_ru = {c["command"]: c["description"] for c in api.commands_by_lang["ru"]}
    assert about_ru.keys() == about.keys() and about["models"] == "your models"
    assert about_ru["models"] == "ваши модели" and about_ru["lang"] == about["lang"]


def test_labels_upload_gives_summary_and_buttons(bs, api) -> None:
    with running_bot(bs):
        reply = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "3")
        assert buttons(reply) == ["train:go", "train:more", "train:opts"]
        assert "sample.json" in reply.text
        # Options: preset cycles, the message is edited in place with an estimate
        opts = _press(api, ALICE, reply, "train:opts", "min")
        assert "opt:arch" in buttons(opts)
        edited = _press(api, ALICE, opts, "opt:arch", "r50")
        assert edited.method == "editMessageText"
        assert "Add more" not in _press(api, ALICE, reply, "train:more").text
    uploads = rows(bs.database_url, Upload)
    assert [u.kind for u in uploads] == ["labelme"]
    prefs = user_row(bs.database_url, ALICE.id)["preferences"]
    assert prefs["pending_uploads"] == [uploads[0].id]
    assert prefs["train_options"]["arch"] == "r50"


def test_json_then_image_album_and_zip_are_paired(bs, api) -> None:
    image = png_bytes(seed=1)
    with running_bot(bs):
        # the JSON alone -> asks for its image; the image right after completes it
        asked = _doc(api, ALICE, "a.json", labelme_bytes(None, image_name="a.png"), "a.png")
        assert asked.method in ("sendMessage", "editMessageText")
        done = _doc(api, ALICE, "a.png", image, "a.json", mime_type="image/png")
        assert "train:go" in buttons(done)
        # the same in one album
        mark = api.mark()
        api.send_document(ALICE, "b.json", labelme_bytes(None, image_name="b.png"), media_group_id="g1")
        api.send_document(ALICE, "b.png", png_bytes(seed=2), media_group_id="g1")
        album = api.wait_reply(ALICE.id, mark, "b.json")
        assert "train:go" in buttons(album)
        # and as a zip (folders inside are ignored, only base names count)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("set/c.json", labelme_bytes(None, image_name="../img/c.png"))
            archive.writestr("img/c.png", png_bytes(seed=3))
        zipped = _doc(api, ALICE, "set.zip", buffer.getvalue(), "c.json")
        assert "train:go" in buttons(zipped)
    uploads = rows(bs.database_url, Upload)
    assert [u.original_name for u in uploads] == ["a.json", "b.json", "c.json"]
    store = FileStore(bs.files_dir)
    for upload in uploads:  # stored self-contained: the trainer needs no second file
        ann = read_labelme(store.read_bytes(upload.sha256), name=upload.original_name)
        assert len(ann.instances) == 3
    assert len(user_row(bs.database_url, ALICE.id)["preferences"]["pending_uploads"]) == 3


@pytest.mark.slow
def test_bad_inputs_get_specific_answers_and_store_nothing(bs, api, tmp_path) -> None:
    good_image = png_bytes()
    broken = json.loads(labelme_bytes(good_image, n=1))
    broken["shapes"][1]["points"] = [[1, 1]]  # its only object: a polygon with one point, nothing usable left
    bad_zip = io.BytesIO()
    with zipfile.ZipFile(bad_zip, "w") as archive:
        archive.writestr("readme.txt.exe", b"MZ")
    cases = [
        ("notes.json", b"{not json", None),
        ("other.json", b'{"hello": 1}', None),
        ("polygon.json", json.dumps(broken).encode(), None),
        ("virus.exe", b"MZ\x90\x00" * 10, "virus.exe"),
        ("broken.zip", b"PK\x03\x04garbage", "broken.zip"),
        ("empty.zip", bad_zip.getvalue(), "empty.zip"),
        ("bad.png", b"\x89PNG\r\n\x1a\nnot really", None),
    ]
    with running_bot(bs, spam_max=10_000):
        for name, data, contains in cases:
            reply = _doc(api, ALICE, name, data, contains)
            assert reply.method in ("sendMessage", "editMessageText")
            assert "Traceback" not in reply.text and "error id" not in reply.text, (name, reply.text)
            assert len(reply.text) < 600
        too_big = _doc(api, ALICE, "huge.json", b"{}", "MB", file_size=int(bs.max_upload_mb * 2**20) + 1)
        assert "limit" in too_big.text
        assert "/help" in _send(api, ALICE, "/nonsense").text
        assert "/help" in _send(api, ALICE, "hello there").text
        assert "LabelMe" in _send(api, ALICE, "/train").text  # out of order: nothing to train on
        assert "Nothing" in _send(api, ALICE, "/cancel").text
        assert "no models" in _send(api, ALICE, "/models").text
        assert "Usage" in _send(api, ALICE, "/scale banana").text
        assert "Usage" in _send(api, ALICE, "/threshold 7").text
        # the annotations issue's corpus of bad files: each gets the reader's own message
        for path, expected in _corpus_cases():
            reply = _doc(api, ALICE, path.name, path.read_bytes())
            assert "error id" not in reply.text and "Traceback" not in reply.text, (path.name, reply.text)
            if expected is not None:
                assert expected[:80] in reply.text, (path.name, reply.text)
    assert rows(bs.database_url, Upload) == []
    assert list(FileStore(bs.files_dir).iter_digests()) == []


def test_one_unusable_shape_among_good_ones_is_skipped_with_a_note(bs, api) -> None:
    """One odd outline must not make a file of good ones unusable: the file is kept, the shape named."""
    doc = json.loads(labelme_bytes(png_bytes(), n=3))
    doc["shapes"][2]["points"] = [[1, 1]]  # shape #3 (a particle inside the crop): one point
    with running_bot(bs):
        reply = _doc(api, ALICE, "mixed.json", json.dumps(doc).encode(), "Skipped")
        assert "Shape #3" in reply.text and "inside crop #1" in reply.text, reply.text
        assert "2 objects: particle 2" in reply.text  # the two good particles are kept
    assert [u.original_name for u in rows(bs.database_url, Upload)] == ["mixed.json"]


def _corpus_cases() -> list[tuple[Path, str | None]]:
    """(file, the message its reader raises) for the corpus entries a bot upload can hit."""
    cases = []
    for entry in json.loads((CORPUS / "manifest.json").read_text())["files"]:
        if "max_bytes" in entry:  # needs a reader argument the bot does not use
            continue
        path = CORPUS / entry["file"]
        try:
            (read_labelme if entry["reader"] == "labelme" else read_image)(path.read_bytes(), name=path.name)
        except InputError as error:
            missing = entry["code"] == "image_missing"  # the bot asks for the image instead
            cases.append((path, None if missing else str(error)))
    return cases


def test_two_users_never_see_each_other(bs, api) -> None:
    with running_bot(bs):
        _send(api, ALICE, "/start")
        _send(api, BORIS, "/start")
        alice = user_row(bs.database_url, ALICE.id)
        with session_scope(bs.database_url) as session:
            model = TrainedModel(
                user_id=alice["id"], version=1, name="gold", status="ready",
                metrics={"holdout": {"n_gt": 14, "precision": 0.9, "recall": 0.75}},
            )
            session.add(model)
            session.flush()
            model_id = model.id
        listing = _send(api, ALICE, "/models", "v1")
        assert f"m:use:{model_id}" in buttons(listing) and "precision 0.90, recall 0.75" in listing.text
        assert "Моделей" in _send(api, BORIS, "/models").text
        # Boris forging Alice's button gets nothing
        fake = {"message_id": 1, "date": 0, "chat": {"id": BORIS.id, "type": "private"}}
        for action in ("use", "del", "ren"):
            mark = api.mark()
            press = api.press(BORIS, fake, f"m:{action}:{model_id}")
            assert "больше нет" in api.wait_reply(BORIS.id, mark).text
            assert api.wait_answered(press)
        # buttons no feature knows (old formats, forged data) are answered as expired
        for data in ("m:zap:1", "lang:de", "corr:x", "nonsense"):
            mark = api.mark()
            press = api.press(BORIS, fake, data)
            assert "устарела" in api.wait_reply(BORIS.id, mark).text, data
            assert api.wait_answered(press), data
        _press(api, ALICE, listing, f"m:use:{model_id}", "active")
        _press(api, ALICE, listing, f"m:ren:{model_id}", "name")
        assert "'Au'" in _send(api, ALICE, "Au", "Au").text
    assert user_row(bs.database_url, ALICE.id)["active_model_id"] == model_id
    assert user_row(bs.database_url, BORIS.id)["active_model_id"] is None
    assert rows(bs.database_url, TrainedModel)[0].name == "Au"


def test_allowlist_refuses_strangers_without_storing_them(settings, api) -> None:
    bs = bot_settings(settings, api, access_mode="allowlist", allowed_users="alice", admins="9999")
    upgrade(bs.database_url)
    with running_bot(bs):
        assert "segbot" in _send(api, ALICE, "/start").text
        refused = _send(api, BORIS, "/start")  # in Boris's language, with the id to pass on
        assert "1002" in refused.text and "закрытый" in refused.text
        assert "admins" in _send(api, ALICE, "/admin").text
        admin = TgUser(9999, "Root", None, "en")
        overview = _send(api, admin, "/admin")
        assert "Users: 2" in overview.text
        mark = api.mark()
        api.send_text(admin, "/admin broadcast Maintenance at 18:00")
        api.wait_reply(admin.id, mark, "Sent to 2")
        assert any(c.text == "Maintenance at 18:00" for c in api.calls_to(ALICE.id))
    assert user_row(bs.database_url, BORIS.id) is None


def test_spam_is_answered_once_and_dropped(bs, api) -> None:
    from bot.lanes import LaneLimiter

    with running_bot(bs, limiter=LaneLimiter(chat=(30.0, 30.0))):  # not Telegram's one a second per chat
        mark = api.mark()
        for _ in range(30):
            api.send_text(ALICE, "/help")
        api.wait_reply(ALICE.id, mark, "Too many")
        api.wait_for(lambda calls: len(calls) >= mark + 21, what="the first 20 answers")
    answers = [c for c in api.calls[mark:] if c.chat_id == ALICE.id]
    assert sum("Too many" in c.text for c in answers) == 1
    assert len(answers) == 21


def test_forget_me_deletes_rows_and_files(bs, api) -> None:
    store = FileStore(bs.files_dir)
    with running_bot(bs):
        _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        _doc(api, BORIS, "sample.json", labelme_bytes(png_bytes(seed=9)), "sample.json")
        alice = user_row(bs.database_url, ALICE.id)
        bundle = bs.files_dir / "models" / f"u{alice['id']}" / "v1"
        bundle.mkdir(parents=True)
        (bundle / "weights.pt").write_bytes(b"w")
        with session_scope(bs.database_url) as session:
            session.add(
                TrainedModel(
                    user_id=alice["id"], version=1, status="ready", path=f"files/models/u{alice['id']}/v1"
                )
            )
        confirm = _send(api, ALICE, "/forget_me", "cannot be undone")
        assert "forget:yes" in buttons(confirm)
        assert "Cancelled" in _press(api, ALICE, confirm, "forget:no").text
        assert user_row(bs.database_url, ALICE.id) is not None
        _press(api, ALICE, confirm, "forget:yes", "deleted")
    assert user_row(bs.database_url, ALICE.id) is None
    assert [u.original_name for u in rows(bs.database_url, Upload)] == ["sample.json"]  # Boris's
    assert rows(bs.database_url, TrainedModel) == [] and not bundle.exists()
    assert len(list(store.iter_digests())) == 1


def test_train_button_queues_a_job_with_progress_message_then_status_and_cancel(bs, api) -> None:
    with running_bot(bs):
        summary = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        queued = _press(api, ALICE, summary, "train:go", "queued")
        assert "#" in queued.text
        eventually(lambda: rows(bs.database_url, Job)[0].progress_message_id)
        jobs = rows(bs.database_url, Job)
        assert len(jobs) == 1 and jobs[0].kind == "train" and jobs[0].state == "queued"
        assert jobs[0].params["upload_ids"] == [rows(bs.database_url, Upload)[0].id]
        assert jobs[0].params["options"]["arch"] == "tiny"
        assert jobs[0].chat_id == ALICE.id and jobs[0].progress_message_id == queued.result["message_id"]
        assert rows(bs.database_url, Dataset)[0].id == jobs[0].dataset_id
        assert "pending_uploads" not in user_row(bs.database_url, ALICE.id)["preferences"]
        assert "queued" in _send(api, ALICE, "/status", f"#{jobs[0].id}").text
        # waited for by its text: the progress message's queue-position edit can come first
        assert "Cancelling" in _send(api, ALICE, "/cancel", "Cancelling", methods=("sendMessage",)).text
        # the progress message follows the job to its end
        api.wait_reply(ALICE.id, 0, "cancelled", methods=("editMessageText",))
    assert rows(bs.database_url, Job)[0].state == "cancelled"


def test_image_with_active_model_is_queued_for_recognition(bs, api) -> None:
    with running_bot(bs):
        assert "no active model" in _doc(api, ALICE, "new.png", png_bytes(seed=5)).text
        model_id = _give_ready_model(bs, ALICE)
        _send(api, ALICE, "/threshold 0.3", "0.3")
        reply = _doc(api, ALICE, "new.png", png_bytes(seed=5), "Recognition", caption="scale=7.34nm")
        assert "1 image" in reply.text
        mark = api.mark()
        api.send_photo(ALICE, png_bytes(seed=6))
        api.wait_reply(ALICE.id, mark, "files to keep full resolution")
    jobs = rows(bs.database_url, Job, kind="predict")
    assert len(jobs) == 2
    assert jobs[0].params["model_id"] == model_id and jobs[0].params["threshold"] == pytest.approx(0.3)
    assert jobs[0].params["nm_per_px"] == pytest.approx(7.34)
    assert jobs[1].params["nm_per_px"] is None  # the caption's scale was for that image only
    assert len(rows(bs.database_url, Upload, kind="image")) == 2


def test_token_never_logged(bs, api, caplog) -> None:
    caplog.set_level("DEBUG")
    with running_bot(bs):
        _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
    assert api.token not in caplog.text
    assert api.token.split(":")[1] not in caplog.text
    # the request URLs (which carry the token) were logged, redacted
    assert "/bot<redacted>/getFile" in caplog.text and "/file/bot<redacted>/documents/" in caplog.text


def test_on_postgresql_upload_train_status_models_forget(settings, api, postgres_url) -> None:
    bs = bot_settings(settings, api, database_url_raw=postgres_url)
    upgrade(bs.database_url)
    with running_bot(bs):
        summary = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        queued = _press(api, ALICE, summary, "train:go", "queued")
        job = re.search(r"#(\d+)", queued.text).group(1)
        # a second press (the set was already queued) names that job in the button's answer
        again = api.answer_text(api.press(ALICE, summary.result, "train:go"))
        assert again == f"Already queued (#{job}); /status shows how it goes."
        assert "train: queued" in _send(api, ALICE, "/status").text
        _give_ready_model(bs, ALICE)
        assert "[active]" in _send(api, ALICE, "/models").text
        confirm = _send(api, ALICE, "/forget_me", "undone")
        _press(api, ALICE, confirm, "forget:yes", "deleted")
    assert user_row(bs.database_url, ALICE.id) is None
    assert rows(bs.database_url, Job) == [] and rows(bs.database_url, Upload) == []


def test_unexpected_error_gives_an_id_that_is_in_the_log(bs, api, monkeypatch, caplog) -> None:
    def broken(session, user_id):
        raise RuntimeError(f"database on fire for {api.token}")

    monkeypatch.setattr(accounts, "status_lines", broken)
    caplog.set_level("ERROR")
    with running_bot(bs):
        reply = _send(api, ALICE, "/status", "error id")
        assert "Traceback" not in reply.text and "fire" not in reply.text
        assert "Commands" in _send(api, ALICE, "/help").text  # the bot goes on
    error_id = re.search(r"error id ([0-9a-f]{8})", reply.text).group(1)
    assert error_id in caplog.text and "database on fire" in caplog.text
    assert api.token not in caplog.text
