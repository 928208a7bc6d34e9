"""Nothing lost, nothing wrong: the real PTB Application against the stand-in, which refuses like
Telegram (an edit that changes nothing, an edit of a vanished message, a second or late answer).

Repeated and late button presses act exactly once; absurd numbers and deep JSON get their own
answers and change nothing; what the bot waits for survives a restart and expires; a result of
several parts interrupted after its first part resumes with the second."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest

from bot.handlers import uploads
from bot.parsing import INT32_MAX, INT64_MAX, parse_id, parse_number
from bot.scale import parse_scale
from storage.db import session_scope
from storage.files import FileStore
from storage.migrate import upgrade
from storage.models import Job, Notice, PendingState, Result, TrainedModel, Upload, User, utcnow
from storage.pending import get_state, purge_expired, put_state, take_state
from tests.botapi.fixtures import buttons, labelme_bytes, png_bytes, rows, user_row
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import bot_settings, running_bot

ALICE = TgUser(3001, "Alice", "alice", "en")
BORIS = TgUser(3002, "Boris", "boris", "ru")
ACK = ("Checking", "Проверяю")
GENERIC = ("error id", "код ошибки")  # the answer reserved for our own bugs
HUGE = "9" * 23


def _send(api, user, text, contains=None):
    """The bot's answer to a text (not a progress message's edit meanwhile)."""
    mark = api.mark()
    api.send_text(user, text)
    return api.wait_reply(user.id, mark, contains, methods=("sendMessage",))


def _doc(api, user, name, data, contains=None, **kw):
    mark = api.mark()
    api.send_document(user, name, data, **kw)
    return api.wait_reply(user.id, mark, contains, skip=ACK)


def _press(api, user, message, data, contains=None, methods=("sendMessage",)):
    mark = api.mark()
    api.press(user, message, data)
    return api.wait_reply(user.id, mark, contains, methods=methods)


def _messages_after(api, user, mark: int, n: int) -> list[str]:
    """The texts of the first n messages sent to user after mark (waits for them)."""

    def found(calls):
        sent = [c for c in calls[mark:] if c.chat_id == user.id and c.method == "sendMessage"]
        return sent if len(sent) >= n else None

    return [c.text for c in api.wait_for(found, what=f"{n} messages")]


def _no_generic_error(api) -> None:
    texts = [c.text for c in api.calls]
    assert not [t for t in texts if any(g in t for g in GENERIC)], texts


def _ready_model(url: str, user) -> int:
    row = user_row(url, user.id)
    with session_scope(url) as session:
        model = TrainedModel(user_id=row["id"], version=1, status="ready")
        session.add(model)
        session.flush()
        return model.id


def _gone_message(user, date: int | None = None) -> dict:
    """A message the bot cannot edit: never sent (id unknown); with date 0 PTB sees it as an
    InaccessibleMessage, as Telegram sends very old ones."""
    when = int(time.time()) if date is None else date
    return {"message_id": 424242, "date": when, "chat": {"id": user.id, "type": "private"}, "text": "old"}


# 1. Presses that must not error


@pytest.mark.parametrize(
    ("user", "already"), [(ALICE, "Already queued (#{job})"), (BORIS, "Уже в очереди (#{job})")]
)
def test_two_presses_of_train_now_queue_one_job(bs, api, user, already) -> None:
    with running_bot(bs):
        summary = _doc(api, user, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        mark = api.mark()
        first = api.press(user, summary.result, "train:go")
        second = api.press(user, summary.result, "train:go")
        answers = [api.answer_text(first), api.answer_text(second)]
        _messages_after(api, user, mark, 1)
        time.sleep(0.5)  # room for a message too many
        texts = _messages_after(api, user, mark, 1)
    jobs = rows(bs.database_url, Job)
    assert len(jobs) == 1 and jobs[0].kind == "train"
    # one message says it is queued; the second press hears "already queued" in its button's
    # answer (a notice, no message: on a busy day messages are what Telegram limits)
    assert len(texts) == 1 and f"#{jobs[0].id}" in texts[0]
    assert "" in answers and sum(already.format(job=jobs[0].id) in a for a in answers) == 1
    assert api.answers(first) == 1 and api.answers(second) == 1
    # the keyboard went with the first press; the second one's removal was refused, harmlessly (or
    # not sent at all: a removal that waits in the bulk lane past its patience gives up)
    assert "reply_markup" not in api.message(user.id, summary.result["message_id"])
    removals = api.calls_to(user.id, ("editMessageReplyMarkup",))
    assert [c.result is None for c in removals] in ([False], [False, True]), removals
    _no_generic_error(api)


def test_two_presses_of_delete_everything_delete_once(bs, api) -> None:
    with running_bot(bs):
        _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        confirm = _send(api, ALICE, "/forget_me", "cannot be undone")
        mark = api.mark()
        first = api.press(ALICE, confirm.result, "forget:yes")
        second = api.press(ALICE, confirm.result, "forget:yes")
        texts = _messages_after(api, ALICE, mark, 2)
        assert api.wait_answered(first) and api.wait_answered(second)
        # pressed again later, when the user is long gone (the gate makes a fresh row for it)
        assert "deleted already" in _press(api, ALICE, confirm.result, "forget:yes", "already").text
    assert sum("everything of yours is deleted" in t for t in texts) == 1
    assert sum("deleted already" in t for t in texts) == 1
    assert user_row(bs.database_url, ALICE.id) is None  # nor a row made by a later press
    assert rows(bs.database_url, Upload) == [] and list(FileStore(bs.files_dir).iter_digests()) == []
    _no_generic_error(api)


def test_train_next_version_twice_queues_one_job(bs, api) -> None:
    with running_bot(bs):
        _send(api, ALICE, "/start")
        uid = user_row(bs.database_url, ALICE.id)["id"]
        with session_scope(bs.database_url) as session:
            upload = Upload(user_id=uid, kind="correction", original_name="fix.json", sha256="0" * 64, size=1)
            session.add(upload)
            session.flush()
            upload_id = upload.id
        markup = {"inline_keyboard": [[{"text": "Train", "callback_data": f"corr:{upload_id}"}]]}
        offer = api._new_message(ALICE.id, text="correction of a.png", reply_markup=markup)
        mark = api.mark()
        presses = [api.press(ALICE, offer, f"corr:{upload_id}") for _ in range(2)]
        texts = _messages_after(api, ALICE, mark, 1)
        [job] = rows(bs.database_url, Job)
        assert job.params["upload_ids"] == [upload_id] and job.params["correction_of"] == upload_id
        assert f"#{job.id}" in texts[0]
        assert sum(f"Already queued (#{job.id})" in api.answer_text(p) for p in presses) == 1
        with session_scope(bs.database_url) as session:
            session.get(Job, job.id).state = "succeeded"
        later = api.press(ALICE, offer, f"corr:{upload_id}")
        assert api.answer_text(later) == f"Already trained in job #{job.id}; /models lists the result."
    assert len(rows(bs.database_url, Job)) == 1
    _no_generic_error(api)


def test_late_answers_and_vanished_messages_still_act_once(bs, api) -> None:
    api.query_ttl_s = 0.0  # every answer comes too late: Telegram refuses each one
    with running_bot(bs):
        summary = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        model_id = _ready_model(bs.database_url, ALICE)
        assert "now active" in _press(api, ALICE, _gone_message(ALICE), f"m:use:{model_id}").text
        # the language confirmation edits the pressed message; that one is gone: a new message
        lang = _press(api, ALICE, _gone_message(ALICE), "lang:ru", "русский", methods=("sendMessage",))
        assert lang.text == "Язык: русский."
        opts = _press(api, ALICE, _gone_message(ALICE), "opt:arch", "r50", methods=("sendMessage",))
        assert "opt:arch" in buttons(opts)
        # a very old message arrives inaccessible (date 0): training is queued all the same
        old = {**_gone_message(ALICE, date=0), "message_id": summary.result["message_id"]}
        assert "#" in _press(api, ALICE, old, "train:go", "очереди").text
        api.wait_for(
            lambda calls: sum(c.method == "answerCallbackQuery" and c.result is None for c in calls) >= 4,
            what="the refused answers",
        )
    row = user_row(bs.database_url, ALICE.id)
    assert row["active_model_id"] == model_id and row["language"] == "ru"
    assert row["preferences"]["train_options"]["arch"] == "r50"
    assert len(rows(bs.database_url, Job)) == 1
    _no_generic_error(api)


# 4. Inputs that must not error


def test_numbers_are_bounded_by_their_column() -> None:
    assert parse_id("12", Job.id) == 12 and parse_id("#12", Job.id) == 12
    assert parse_id(str(INT32_MAX), Job.id) == INT32_MAX and parse_id(str(INT32_MAX + 1), Job.id) is None
    assert parse_id(str(INT32_MAX + 1), Job.chat_id) == INT32_MAX + 1  # a BIGINT column
    assert parse_id(str(INT64_MAX + 1), Job.chat_id) is None
    for bad in (HUGE, "0", "-3", "1e3", "²", "٣", "", None, "12a"):
        assert parse_id(bad, Job.id) is None, bad
    assert parse_number("0,3", 0.05, 0.95) == pytest.approx(0.3)
    for bad in ("1e999", "nan", "inf", "1_0", HUGE, "0.96", ""):
        assert parse_number(bad, 0.05, 0.95) is None, bad
    assert parse_scale(HUGE) is None and parse_scale("0.0000000001") is None


@pytest.fixture(params=["sqlite", "postgresql"])
def any_bs(request, settings, api):
    """The bot's settings on SQLite, and on PostgreSQL (where INTEGER overflows at 2**31)."""
    overrides = {}
    if request.param == "postgresql":
        overrides["database_url_raw"] = request.getfixturevalue("postgres_url")
    s = bot_settings(settings, api, **overrides)
    upgrade(s.database_url)
    return s


def test_absurd_numbers_and_deep_json_get_their_own_answer_and_change_nothing(any_bs, api) -> None:
    bs = any_bs
    with running_bot(bs, spam_max=10_000):
        summary = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        _press(api, ALICE, summary.result, "train:go", "queued")
        model_id = _ready_model(bs.database_url, ALICE)
        cases = [
            ("/cancel 99999999999999999999", "Usage: /cancel"),
            ("/cancel #12abc", "Usage: /cancel"),
            ("/cancel ²", "Usage: /cancel"),
            (f"/cancel {INT32_MAX + 1}", "Usage: /cancel"),
            ("/threshold 99999999999999999999", "Usage: /threshold"),
            ("/threshold 1e999", "Usage: /threshold"),
            ("/threshold nan", "Usage: /threshold"),
            ("/scale 99999999999999999999", "Usage: /scale"),
            ("/scale 0.0000000001", "Usage: /scale"),
        ]
        for text, expected in cases:
            assert expected in _send(api, ALICE, text).text, text
        forged = [f"m:{a}:{HUGE}" for a in ("use", "ren", "del")] + [f"corr:{HUGE}", f"m:use:{INT32_MAX + 1}"]
        for data in forged:
            assert "expired" in _press(api, ALICE, summary.result, data).text, data
        deep = b"[" * 100_000 + b"]" * 100_000
        reply = _doc(api, ALICE, "deep.json", deep, "deep.json")  # named: not a progress edit
        assert "nests too deeply" in reply.text
        assert "/help" in _send(api, ALICE, "a name for nothing").text  # no rename was pending
    [job] = rows(bs.database_url, Job)
    assert job.state == "queued"  # /cancel with a bad number cancelled nothing
    row = user_row(bs.database_url, ALICE.id)
    assert row["threshold"] is None and row["nm_per_px"] is None  # nothing chosen: segbot's default
    assert [m.id for m in rows(bs.database_url, TrainedModel)] == [model_id]
    assert [u.original_name for u in rows(bs.database_url, Upload)] == ["sample.json"]
    _no_generic_error(api)


# 3. State that survives a bot restart


def test_pending_json_rename_and_album_survive_a_restart(bs, api, monkeypatch) -> None:
    monkeypatch.setattr(uploads, "ALBUM_WAIT_S", 60.0)  # the album is still being collected at the stop
    with running_bot(bs):
        _doc(api, ALICE, "a.json", labelme_bytes(None, image_name="a.png"), "a.png")
        model_id = _ready_model(bs.database_url, ALICE)
        _press(api, ALICE, _gone_message(ALICE), f"m:ren:{model_id}", "new name")
        api.send_document(ALICE, "b.json", labelme_bytes(None, image_name="b.png"), media_group_id="g7")
        api.send_document(ALICE, "b.png", png_bytes(seed=2), media_group_id="g7")
        deadline = time.monotonic() + 10
        while len(rows(bs.database_url, PendingState, kind="album")) < 2:
            assert time.monotonic() < deadline, "the album's parts were not stored"
            time.sleep(0.05)
    kinds = sorted(s.kind for s in rows(bs.database_url, PendingState))
    assert kinds == ["album", "album", "awaiting", "rename"]
    assert rows(bs.database_url, Upload) == []

    monkeypatch.setattr(uploads, "ALBUM_WAIT_S", 0.8)
    mark = api.mark()
    with running_bot(bs):  # a new Application on the same database
        album = api.wait_reply(ALICE.id, mark, "b.json", skip=ACK)  # flushed after the restart
        assert "train:go" in buttons(album)
        done = _doc(api, ALICE, "a.png", png_bytes(seed=1), "a.json", mime_type="image/png")
        assert "train:go" in buttons(done)
        assert "'Au'" in _send(api, ALICE, "Au", "Au").text
    labels = rows(bs.database_url, Upload, kind="labelme")
    assert sorted(u.original_name for u in labels) == ["a.json", "b.json"]
    assert rows(bs.database_url, TrainedModel)[0].name == "Au"
    assert rows(bs.database_url, PendingState) == []
    assert sum("b.json" in c.text for c in api.calls[mark:] if c.chat_id == ALICE.id) == 1  # once
    _no_generic_error(api)


def _expired(url: str, user_id: int, kind: str, key: str, payload: dict) -> None:
    with session_scope(url) as session:
        put_state(session, user_id, kind, key, payload, timedelta(hours=1))
        row = session.query(PendingState).filter_by(user_id=user_id, kind=kind, key=key).one()
        row.expires_at = utcnow() - timedelta(seconds=1)


def test_expired_state_is_ignored_and_purged(bs, api) -> None:
    waiting = {"name": "c.json", "data": base64.b64encode(labelme_bytes(None, image_name="c.png")).decode()}
    with running_bot(bs):
        _send(api, ALICE, "/start")
        uid = user_row(bs.database_url, ALICE.id)["id"]
        model_id = _ready_model(bs.database_url, ALICE)
        _expired(bs.database_url, uid, "awaiting", "c.png", waiting)
        _expired(bs.database_url, uid, "rename", "", {"model_id": model_id})
        # the image is not paired with the expired JSON, the text is no name
        assert "no active model" in _doc(api, ALICE, "c.png", png_bytes(seed=3), mime_type="image/png").text
        assert "/help" in _send(api, ALICE, "Au").text
        assert rows(bs.database_url, PendingState) == []  # deleted when found expired
        _expired(bs.database_url, uid, "awaiting", "d.png", waiting)
    assert len(rows(bs.database_url, PendingState)) == 1
    with running_bot(bs):  # a start deletes what expired meanwhile
        deadline = time.monotonic() + 10
        while rows(bs.database_url, PendingState):
            assert time.monotonic() < deadline, "expired state not purged at start"
            time.sleep(0.05)
    assert rows(bs.database_url, Upload, kind="labelme") == []
    assert rows(bs.database_url, TrainedModel)[0].name == ""


def test_state_functions_ignore_what_expired(bs) -> None:
    url = bs.database_url
    with session_scope(url) as session:
        user = User(telegram_id=77, language="en", preferences={})
        session.add(user)
        session.flush()
        uid = user.id
        put_state(session, uid, "rename", "", {"model_id": 1}, timedelta(minutes=5))
        put_state(session, uid, "rename", "", {"model_id": 2}, timedelta(minutes=5))  # replaces
    with session_scope(url) as session:
        assert get_state(session, uid, "rename") == {"model_id": 2}
    _expired(url, uid, "rename", "", {"model_id": 3})
    with session_scope(url) as session:
        assert get_state(session, uid, "rename") is None and take_state(session, uid, "rename") is None
    _expired(url, uid, "awaiting", "x.png", {})
    with session_scope(url) as session:
        put_state(session, uid, "awaiting", "y.png", {}, timedelta(minutes=5))
        assert purge_expired(session) == 1
    assert [s.key for s in rows(url, PendingState)] == ["y.png"]


# 5. A multi-part result interrupted after its first part


def test_multipart_result_resumes_after_the_part_sent(bs, api) -> None:
    store = FileStore(bs.files_dir)
    with session_scope(bs.database_url) as session:
        user = User(telegram_id=ALICE.id, username="alice", language="en", preferences={})
        session.add(user)
        session.flush()
        job = Job(user_id=user.id, kind="predict", state="succeeded", params={}, chat_id=ALICE.id)
        session.add(job)
        session.flush()
        for i in range(2):
            files = {
                "overlay": store.put_bytes(png_bytes(seed=10 + i)),
                "labelme": store.put_bytes(b'{"shapes": []}' + bytes([i])),
                "csv": store.put_bytes(f"id,d_px\n1,{i}\n".encode()),
            }
            session.add(
                Result(job_id=job.id, user_id=user.id, image_name=f"img{i}.png", files=files,
                       summary={"n_objects": 3 + i})
            )
        session.add(Notice(user_id=user.id, job_id=job.id, kind="predict_done", payload={}))
    # parts: img0 photo, img0 files, img1 photo, img1 files; Telegram fails from part 2 on
    api.failing["sendMediaGroup"] = {"ok": False, "error_code": 502, "description": "Bad Gateway"}
    with running_bot(bs, tick_interval=0.2):
        api.wait_for(
            lambda calls: sum(c.method == "sendMediaGroup" for c in calls) >= 2, what="retried part 2"
        )
    [notice] = rows(bs.database_url, Notice)
    assert notice.parts_sent == 1 and notice.sent_at is None
    api.failing.clear()
    with running_bot(bs, tick_interval=0.2):  # the bot restarted
        deadline = time.monotonic() + 20
        while rows(bs.database_url, Notice)[0].sent_at is None:
            assert time.monotonic() < deadline, "the notice was not finished"
            time.sleep(0.1)
    accepted = [c for c in api.calls_to(ALICE.id) if c.result is not None]
    photos = [c.text for c in accepted if c.method == "sendPhoto"]
    assert len(photos) == 2 and "img0.png: 3 objects" in photos[0] and "img1.png: 4 objects" in photos[1]
    groups = [sorted(n for n, _ in c.files.values()) for c in accepted if c.method == "sendMediaGroup"]
    assert groups == [["img0.json", "img0_objects.csv"], ["img1.json", "img1_objects.csv"]]
    assert [c.method for c in accepted] == ["sendPhoto", "sendMediaGroup", "sendPhoto", "sendMediaGroup"]
    assert rows(bs.database_url, Notice)[0].parts_sent == 4
