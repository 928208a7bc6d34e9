"""The bot's outbox and progress messages against the stand-in: notices delivered exactly once
(also across a bot restart, and when Telegram fails), results sent as photo + documents with a
caption, big sets as one zip; progress edits throttled and RetryAfter honoured."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from annotations.model import Instance
from bot.captions import fmt_num
from measures.objects import measure_arrays
from outputs.files import write_outputs
from storage.db import session_scope
from storage.files import FileStore
from storage.models import Job, Notice, Result, TrainedModel, User
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import running_bot

ALICE = TgUser(2001, "Alice", "alice", "en")


def _user(url: str, telegram_id: int = ALICE.id) -> int:
    with session_scope(url) as session:
        user = User(telegram_id=telegram_id, username="alice", language="en", preferences={})
        session.add(user)
        session.flush()
        return user.id


def _job(session, user_id: int, kind: str, state: str = "succeeded", **kw) -> Job:
    job = Job(user_id=user_id, kind=kind, state=state, params={}, **kw)
    session.add(job)
    session.flush()
    return job


def _squares(n: int) -> list[Instance]:
    """n squares of different sizes (6, 8, 10... px), side by side in an 80 px image."""
    out = []
    for i in range(n):
        x, side = 4 + 15 * i, 6 + 2 * i
        square = np.array([[x, 5], [x + side, 5], [x + side, 5 + side], [x, 5 + side]], float)
        out.append(Instance("particle", square, 0.9))
    return out


def _result_files(store: FileStore, tmp: Path, stem: str, n: int) -> tuple[dict[str, str], dict]:
    """Real outputs (outputs.files) for a small image with n square objects, at 2 nm/px."""
    image = np.full((80, 80, 3), 40, np.uint8)
    out = tmp / stem
    out.mkdir()
    written = write_outputs(out, stem, image, _squares(n), nm_per_px=2.0)
    summary = json.loads(Path(written["summary"]).read_text())
    return {role: store.put_file(path) for role, path in written.items()}, summary


def _notice(session, user_id: int, job: Job, kind: str, payload: dict | None = None) -> None:
    session.add(Notice(user_id=user_id, job_id=job.id, kind=kind, payload=payload or {}))


def _sent(url: str) -> int:
    with session_scope(url) as session:
        return sum(1 for n in session.query(Notice).all() if n.sent_at is not None)


def _wait_sent(url: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _sent(url) < count:
        assert time.monotonic() < deadline, f"only {_sent(url)} of {count} notices sent"
        time.sleep(0.1)


@pytest.mark.slow
def test_notices_are_delivered_once_across_restart_and_failures(bs, api, tmp_path) -> None:
    store = FileStore(bs.files_dir)
    uid = _user(bs.database_url)
    with session_scope(bs.database_url) as session:
        train = _job(session, uid, "train")
        model = TrainedModel(
            user_id=uid, version=3, status="ready", job_id=train.id,
            metrics={"holdout": {"n_gt": 9, "precision": 0.87, "recall": 0.9}, "train_seconds": 75.0,
                     "device": "cpu"},
        )
        session.add(model)
        _notice(session, uid, train, "train_done", {"model_id": None})
        predict = _job(session, uid, "predict", chat_id=ALICE.id)
        for i, n in enumerate((3, 5)):
            files, summary = _result_files(store, tmp_path, f"img{i}", n)
            session.add(
                Result(job_id=predict.id, user_id=uid, image_name=f"img{i}.png", files=files, summary=summary)
            )
        _notice(session, uid, predict, "predict_done", {})
        failed = _job(session, uid, "train", state="failed", error="Your labels have no objects.")
        _notice(session, uid, failed, "job_failed", {})
        big = _job(session, uid, "predict")
        for i in range(6):
            files, summary = _result_files(store, tmp_path, f"big{i}", 2)
            session.add(
                Result(job_id=big.id, user_id=uid, image_name=f"big{i}.png", files=files, summary=summary)
            )
        _notice(session, uid, big, "predict_done", {})
    api.fail_next["sendMessage"] = {"ok": False, "error_code": 502, "description": "Bad Gateway"}  # transient
    with running_bot(bs, tick_interval=0.2):
        _wait_sent(bs.database_url, 4)
    calls = api.calls_to(ALICE.id)
    texts = [c.text for c in calls if c.method == "sendMessage" and c.result]
    assert sum("Model v3 is ready" in t for t in texts) == 1
    assert any("precision 0.87" in t and "1 min 15 s on CPU" in t for t in texts)
    assert sum("Your labels have no objects." in t for t in texts) == 1
    photos = [c for c in calls if c.method == "sendPhoto"]
    assert len(photos) == 2
    assert photos[0].files["photo"][1].startswith(b"\x89PNG")
    assert "img0.png: 3 objects" in photos[0].text and "nm" in photos[0].text
    assert "img1.png: 5 objects" in photos[1].text
    groups = [c for c in calls if c.method == "sendMediaGroup"]
    assert len(groups) == 2
    names = sorted(name for name, _ in groups[0].files.values())
    assert names == ["img0.json", "img0_hist.png", "img0_labels.tif", "img0_objects.csv", "img0_rois.zip"]
    csv = next(data for name, data in groups[0].files.values() if name.endswith(".csv"))
    assert len(csv.decode().strip().splitlines()) == 1 + 3  # header + one row per object
    labelme = next(data for name, data in groups[0].files.values() if name.endswith(".json"))
    assert len(json.loads(labelme)["shapes"]) == 3
    zips = [c for c in calls if c.method == "sendDocument"]
    assert len(zips) == 1 and "6 images" in zips[0].text and "12 objects" in zips[0].text
    archive = zipfile.ZipFile(io.BytesIO(zips[0].files["document"][1]))
    assert len([n for n in archive.namelist() if n.endswith("_overlay.png")]) == 6
    with session_scope(bs.database_url) as session:
        assert session.get(User, uid).active_model_id is not None  # train_done activates the model

    # restart: nothing is sent again; a new notice is sent exactly once
    before = len(api.calls_to(ALICE.id))
    with running_bot(bs, tick_interval=0.2):
        time.sleep(1.5)
        assert len(api.calls_to(ALICE.id)) == before
        with session_scope(bs.database_url) as session:
            late = _job(session, uid, "train", state="failed", error="late failure")
            _notice(session, uid, late, "job_failed", {})
        _wait_sent(bs.database_url, 5)
        time.sleep(1.0)
    assert sum("late failure" in c.text for c in api.calls_to(ALICE.id)) == 1


def test_small_objects_bring_a_zoomed_inset_right_after_the_overlay(bs, api, tmp_path) -> None:
    from trainer.synthetic import synthetic_scene

    store = FileStore(bs.files_dir)
    uid = _user(bs.database_url)
    scene = synthetic_scene(3, n_particles=239, n_pits=0, radius=(3.5, 3.5), pairs=0.0)  # 7 px on 512 px
    written = write_outputs(tmp_path, "dense", scene.image, scene.instances)
    assert "inset" in written
    summary = json.loads(Path(written["summary"]).read_text())
    with session_scope(bs.database_url) as session:
        job = _job(session, uid, "predict", chat_id=ALICE.id)
        files = {role: store.put_file(path) for role, path in written.items()}
        session.add(Result(job_id=job.id, user_id=uid, image_name="dense.png", files=files, summary=summary))
        _notice(session, uid, job, "predict_done", {})
    with running_bot(bs, tick_interval=0.2):
        _wait_sent(bs.database_url, 1)
    calls = [c for c in api.calls_to(ALICE.id) if c.method in ("sendPhoto", "sendMediaGroup")]
    assert [c.method for c in calls] == ["sendPhoto", "sendPhoto", "sendMediaGroup"]
    overlay, inset = calls[0], calls[1]
    assert f"dense.png: {len(scene.instances)} objects" in overlay.text
    assert inset.files["photo"] == ("dense_inset.png", Path(written["inset"]).read_bytes())
    assert "yellow frame" in inset.text


def test_blocked_user_notice_is_not_retried_forever(bs, api) -> None:
    uid = _user(bs.database_url)
    with session_scope(bs.database_url) as session:
        job = _job(session, uid, "train", state="failed", error="x")
        _notice(session, uid, job, "job_failed", {})
    api.fail_next["sendMessage"] = {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    with running_bot(bs, tick_interval=0.2):
        _wait_sent(bs.database_url, 1)
        time.sleep(0.6)
    assert len([c for c in api.calls_to(ALICE.id) if c.method == "sendMessage"]) == 1


@pytest.mark.slow
def test_progress_edits_are_throttled_and_honour_retry_after(bs, api) -> None:
    uid = _user(bs.database_url)
    message = api._new_message(ALICE.id, text="queued")
    with session_scope(bs.database_url) as session:
        job = _job(
            session,
            uid,
            "train",
            state="running",
            chat_id=ALICE.id,
            progress_message_id=message["message_id"],
            stage="training",
        )
        job_id = job.id

    def set_progress(value: float, **fields: object) -> None:
        with session_scope(bs.database_url) as session:
            row = session.get(Job, job_id)
            row.progress, row.eta_s = value, 100 - 100 * value
            for key, item in fields.items():
                setattr(row, key, item)

    with running_bot(bs, tick_interval=0.1, progress_interval=1.0):
        start = time.monotonic()
        step = 0
        while time.monotonic() - start < 3.5:
            step += 1
            set_progress(min(step / 100, 0.99))
            time.sleep(0.05)
        api.fail_next["editMessageText"] = {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 2",
            "parameters": {"retry_after": 2},
        }
        # keep the progress moving until the bot tries (and is refused) an edit: if the loop
        # above ended right after an edit, the bot has nothing new to send and never would
        deadline = time.monotonic() + 10
        while not any(c.method == "editMessageText" and c.result is None for c in list(api.calls)):
            assert time.monotonic() < deadline, "timed out waiting for the refused edit"
            step += 1
            set_progress(min(step / 100, 0.99))
            time.sleep(0.05)
        refused_at = time.monotonic()
        refused = 1 + next(
            i for i, c in enumerate(list(api.calls)) if c.method == "editMessageText" and c.result is None
        )
        set_progress(0.995)
        # how many edits went through before the refusal depends on the machine's load: wait for
        # one that went through after it
        api.wait_for(
            lambda calls: any(
                c.method == "editMessageText" and c.result is not None for c in calls[refused:]
            ),
            timeout=10,
            what="an edit after the wait",
        )
        resumed_at = time.monotonic()
        set_progress(1.0, state="succeeded", finished_at=datetime.now(UTC))
        api.wait_reply(ALICE.id, 0, "finished", methods=("editMessageText",), timeout=10)
    edits = [c for c in api.calls_to(ALICE.id, ("editMessageText",))]
    done = [c for c in edits if c.result is not None]
    gaps = [b.at - a.at for a, b in zip(edits, edits[1:], strict=False)]
    assert min(gaps) >= 0.9, gaps  # >= progress_interval apart, never a burst
    assert resumed_at - refused_at >= 1.8  # RetryAfter(2) honoured
    assert "%" in done[0].text and "ETA" in done[0].text and "training" in done[0].text
    assert "finished" in api.message(ALICE.id, message["message_id"])["text"]
    assert len(edits) <= 3.5 / 1.0 + 4


def test_a_preparing_job_shows_the_queues_estimate_until_it_has_its_own_eta(bs) -> None:
    """While a training prepares its data it has no ETA of its own; its message gives the estimate
    the user was shown at queueing ("~"), then the job's own ETA once it reports one."""
    from bot.delivery import _progress_rows
    from jobqueue.estimates import estimate_job
    from jobs.params import TrainParams

    uid = _user(bs.database_url)
    params = TrainParams(upload_ids=(), options={"arch": "tiny", "iterations": 600})
    with session_scope(bs.database_url) as session:
        job = _job(session, uid, "train", state="running", chat_id=ALICE.id, progress_message_id=5,
                   stage="preparing", progress=0.0)
        job.params = params.to_json()
        session.flush()
        estimate = estimate_job(session, job)
        assert estimate is not None and estimate.seconds  # the fallback table knows tiny on a CPU
        [row] = _progress_rows(session)
        seconds = int(estimate.seconds)
        assert row["text"].endswith(f"preparing 0%, ETA ~{seconds // 60}:{seconds % 60:02d}"), row["text"]
        job.stage, job.progress, job.eta_s = "training", 0.5, 75.0
        session.flush()
        [row] = _progress_rows(session)
        assert row["text"].endswith("training 50%, ETA 1:15"), row["text"]


def test_stats_and_export_cover_only_the_users_own_results(bs, api, tmp_path) -> None:
    store = FileStore(bs.files_dir)
    uid = _user(bs.database_url)
    other = _user(bs.database_url, telegram_id=2999)
    with session_scope(bs.database_url) as session:
        for owner, stems in ((uid, ("a", "b")), (other, ("zz",))):
            job = _job(session, owner, "predict")
            for stem, n in zip(stems, (3, 5), strict=False):
                files, summary = _result_files(store, tmp_path, f"{stem}{owner}", n)
                session.add(Result(job_id=job.id, user_id=owner, image_name=f"{stem}.png", files=files,
                                   summary=summary))
    with running_bot(bs):
        mark = api.mark()
        api.send_text(ALICE, "/stats")
        stats = api.wait_reply(ALICE.id, mark, "Pooled")
        # pooled over Alice's 3 + 5 objects: the sample std of all 8, in nm
        d_nm = np.concatenate([measure_arrays(_squares(n)).d_px * 2.0 for n in (3, 5)])
        mean, std = fmt_num(d_nm.mean()), fmt_num(np.std(d_nm, ddof=1))
        head, sauter, sure = stats.text.rsplit("\n", 2)
        assert head == f"Pooled over 2 images: 8 objects\nmean D = {mean} ± {std} nm"
        assert sauter == f"surface-weighted mean d_s = {fmt_num((d_nm**3).sum() / (d_nm**2).sum())} nm"
        assert sure.startswith("8 objects: mean known to ±")  # Alice set no /metal: no dispersion
        mark = api.mark()
        api.send_text(ALICE, "/export")
        export = api.wait_reply(ALICE.id, mark, methods=("sendDocument",))
    names = zipfile.ZipFile(io.BytesIO(export.files["document"][1])).namelist()
    assert any(n.endswith("a_overlay.png") for n in names) and any(n.endswith("b_objects.csv") for n in names)
    assert not any("zz" in n for n in names)


def test_a_failed_jobs_reason_reaches_each_user_in_their_language(bs, api) -> None:
    """A body's JobError (a Text) goes through the real runner into the job_failed notice, and the bot
    says it in the user's language; the job row keeps the English for the operator. A notice written
    by an older worker (a plain English reason) is still delivered as it is."""
    from jobqueue.runner import drain
    from jobqueue.store import submit_job
    from jobs.params import PredictParams

    boris = TgUser(2002, "Boris", "boris", "ru")
    with session_scope(bs.database_url) as session:
        ids = {}
        for tg, lang in ((ALICE, "en"), (boris, "ru")):
            user = User(telegram_id=tg.id, username=tg.username, language=lang, preferences={})
            session.add(user)
            session.flush()
            ids[lang] = user.id
            # no uploads: the predict body refuses before it loads anything
            submit_job(session, user, PredictParams(model_id=999), settings=bs, enqueue=False,
                       chat_id=tg.id)
        old = _job(session, ids["ru"], "train", state="failed", error="an old English reason")
        _notice(session, ids["ru"], old, "job_failed", {"job_id": old.id, "reason": "an old English reason"})
    assert drain(bs, "predict") == 2
    with session_scope(bs.database_url) as session:
        failed = session.query(Job).filter(Job.kind == "predict").all()
        assert [j.state for j in failed] == ["failed", "failed"]
        assert all(j.error == "This job has no files to work on; please send them again." for j in failed)
    with running_bot(bs, tick_interval=0.2):
        _wait_sent(bs.database_url, 3)
    english = [c.text for c in api.calls_to(ALICE.id) if c.method == "sendMessage"]
    russian = [c.text for c in api.calls_to(boris.id) if c.method == "sendMessage"]
    assert any("This job has no files to work on" in text for text in english), english
    assert any("У этой задачи нет файлов для работы" in text for text in russian), russian
    assert not any("This job has no files" in text for text in russian), russian
    assert any("an old English reason" in text for text in russian), russian
