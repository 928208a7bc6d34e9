"""Job records on SQLite and PostgreSQL, in-process: fair order, positions, limits, cancel,
running bodies (success, user error, bug, out of memory), the sweeper, the notice outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobqueue.runner import drain, run_claim
from jobqueue.store import (
    QueueLimitError,
    claim_next,
    fair_order,
    finish_job,
    queue_position,
    request_cancel,
    should_stop,
    submit_job,
    sweep,
    user_jobs,
)
from jobs.params import JobParams, ParamsError, PredictParams, TrainParams, parse_params
from storage.db import session_factory
from storage.models import Job, JobState, Notice, Result, User, utcnow
from storage.notices import add_notice, mark_sent, pending_notices
from tests.queue_fakes import (
    CrashParams,
    FailParams,
    NoopDone,
    NoopParams,
    OomParams,
    SleepDone,
    SleepParams,
)


@dataclass(frozen=True, kw_only=True)
class NotHereParams(JobParams, kind="nothere"):
    """A kind some process may submit but no body in this worker runs."""


@pytest.fixture
def qs(settings, db_url):
    """Settings on the parametrized database with room for many jobs."""
    return settings.model_copy(update={"database_url_raw": db_url, "max_jobs_per_user": 20,
                                       "max_running_per_user": 5})


@pytest.fixture
def session(qs) -> Session:
    with session_factory(qs.database_url)() as s:
        yield s


def _user(session: Session, tid: int, **kw) -> User:
    user = User(telegram_id=tid, username=f"u{tid}", **kw)
    session.add(user)
    session.commit()
    return user


def _submit(session, user, qs, params: JobParams | None = None) -> Job:
    return submit_job(session, user, params or SleepParams(), settings=qs, enqueue=False)


def _reload(qs, job_id: int) -> Job:
    with session_factory(qs.database_url)() as s:
        return s.get(Job, job_id)


def test_round_robin_between_users_and_positions(session, qs) -> None:
    a, b, c = (_user(session, t) for t in (1, 2, 3))
    jobs = {}
    for user, n in ((a, 4), (b, 2), (c, 1)):
        for i in range(n):
            jobs[(user.username, i)] = _submit(session, user, qs)
    expected = [("u1", 0), ("u2", 0), ("u3", 0), ("u1", 1), ("u2", 1), ("u1", 2), ("u1", 3)]
    assert [j.id for j in fair_order(session, "train")] == [jobs[k].id for k in expected]
    for position, key in enumerate(expected, start=1):
        assert queue_position(session, jobs[key]) == position
    claimed = []
    while claim := claim_next(qs.database_url, "train", qs, "w1"):
        claimed.append(claim.job_id)
    assert claimed == [jobs[k].id for k in expected]
    session.expire_all()
    assert queue_position(session, jobs[("u1", 0)]) is None
    assert [j.state for j in user_jobs(session, a, active_only=True)] == ["running"] * 4


def test_user_with_running_job_waits_behind_others(session, qs) -> None:
    qs = qs.model_copy(update={"max_running_per_user": 1})
    a, b = _user(session, 1), _user(session, 2)
    a1, a2 = _submit(session, a, qs), _submit(session, a, qs)
    first = claim_next(qs.database_url, "train", qs)
    assert first.job_id == a1.id
    b1 = _submit(session, b, qs)
    assert claim_next(qs.database_url, "train", qs).job_id == b1.id  # a2 waits: a is at its cap
    assert claim_next(qs.database_url, "train", qs) is None
    assert finish_job(qs.database_url, first, JobState.SUCCEEDED)
    assert claim_next(qs.database_url, "train", qs).job_id == a2.id


def test_predict_and_train_are_separate_queues(session, qs) -> None:
    a = _user(session, 1)
    train = _submit(session, a, qs)
    predict = submit_job(session, a, PredictParams(model_id=1), settings=qs, enqueue=False)
    assert claim_next(qs.database_url, "predict", qs).job_id == predict.id
    assert claim_next(qs.database_url, "predict", qs) is None
    assert claim_next(qs.database_url, "train", qs).job_id == train.id


def test_per_user_cap_quota_and_admins(session, qs) -> None:
    qs = qs.model_copy(update={"max_jobs_per_user": 2, "daily_gpu_seconds": 100.0, "admins": "boss"})
    a = _user(session, 1)
    _submit(session, a, qs)
    _submit(session, a, qs)
    with pytest.raises(QueueLimitError) as caught:
        _submit(session, a, qs)
    assert caught.value.code == "too_many_jobs" and "limit is 2" in str(caught.value)
    assert session.scalar(select(func.count()).select_from(Job)) == 2  # refused job left no row
    b = _user(session, 2)
    session.add(Job(user_id=b.id, kind="train", state="succeeded", gpu_seconds=150.0,
                    started_at=utcnow() - timedelta(hours=3)))
    session.commit()
    with pytest.raises(QueueLimitError) as caught:
        _submit(session, b, qs)
    assert caught.value.code == "quota"
    b.daily_gpu_seconds = 1000.0  # a per-user override
    session.commit()
    waiting = _submit(session, b, qs)
    b.daily_gpu_seconds = 120.0  # the quota ran out while the job waited: it does not start
    session.commit()
    claimed = []
    while claim := claim_next(qs.database_url, "train", qs):
        claimed.append(claim.user_id)
    assert claimed == [a.id, a.id]  # user a's jobs run; b's waiting job was refused
    stopped = _reload(qs, waiting.id)
    assert stopped.state == "failed" and "compute time" in stopped.error and stopped.started_at is None
    assert session.scalar(select(Notice.kind).where(Notice.job_id == waiting.id)) == "job_failed"
    boss = _user(session, 3)
    boss.username = "Boss"
    session.commit()
    for _ in range(4):  # admins are exempt from caps and quota
        _submit(session, boss, qs)


def test_cancel_queued_never_starts_and_running_is_asked_to_stop(session, qs) -> None:
    a = _user(session, 1)
    queued, running = _submit(session, a, qs), _submit(session, a, qs)
    assert request_cancel(session, queued)
    assert queued.state == JobState.CANCELLED and queued.finished_at is not None
    claim = claim_next(qs.database_url, "train", qs)
    assert claim.job_id == running.id
    assert claim_next(qs.database_url, "train", qs) is None  # the cancelled one never starts
    assert not should_stop(qs.database_url, claim)
    assert request_cancel(session, running)
    assert running.state == JobState.RUNNING and running.cancel_requested
    assert should_stop(qs.database_url, claim)
    assert run_claim(qs, claim) == "cancelled"
    job = _reload(qs, running.id)
    assert job.state == JobState.CANCELLED
    assert session.scalar(select(func.count()).select_from(Result)) == 0
    assert not request_cancel(session, job)  # already finished


def test_jobs_run_in_process_success_error_bug_and_oom(session, qs) -> None:
    a = _user(session, 1)
    ok = _submit(session, a, qs, SleepParams(seconds=0.05))
    oom = _submit(session, a, qs, OomParams())
    bad = _submit(session, a, qs, FailParams(message="Your LabelMe file has no polygons."))
    bug = _submit(session, a, qs, CrashParams())
    after = _submit(session, a, qs, SleepParams(seconds=0.01))
    unknown = _submit(session, a, qs, NotHereParams())
    assert drain(qs, "train") == 6
    states = {j: _reload(qs, j.id) for j in (ok, oom, bad, bug, after, unknown)}
    assert states[ok].state == "succeeded" and states[ok].progress == 1.0 and states[ok].attempts == 1
    assert states[after].state == "succeeded"
    assert states[oom].state == "failed" and "out of memory" in states[oom].error
    assert "smaller" in states[oom].error and "Traceback" not in states[oom].error
    assert states[bad].error == "Your LabelMe file has no polygons."
    assert "internal error" in states[bug].error and "a bug" not in states[bug].error
    assert "cannot run jobs of kind 'nothere'" in states[unknown].error
    notices = {(n.job_id, n.kind) for n in session.scalars(select(Notice))}
    assert notices == {(ok.id, "sleep_done"), (after.id, "sleep_done"), (oom.id, "job_failed"),
                       (bad.id, "job_failed"), (bug.id, "job_failed"), (unknown.id, "job_failed")}
    assert session.scalar(select(func.count()).select_from(Result)) == 2
    assert states[ok].gpu_seconds > 0


def test_queue_task_runs_with_the_settings_it_was_registered_with(session, qs, monkeypatch) -> None:
    """The Celery task uses the worker's settings (closed over at registration), not a fresh read:
    here the environment names another, empty database, so a task that re-read it would find no job."""
    from jobqueue.celery_app import TASK_NAME, make_app
    from jobqueue.tasks import register_tasks
    from storage.migrate import upgrade

    job = _submit(session, _user(session, 1), qs, NoopParams())
    elsewhere = "sqlite:///" + str(qs.data_dir / "not-this-one.db")
    upgrade(elsewhere)
    other = qs.model_copy(update={"database_url_raw": elsewhere})
    register_tasks(make_app(other), other)  # an app made earlier in the process keeps its own settings
    app = make_app(qs)
    register_tasks(app, qs)
    monkeypatch.setenv("DATABASE_URL", elsewhere)
    assert app.tasks[TASK_NAME]("train") == 1  # runs the body in this process
    assert _reload(qs, job.id).state == "succeeded"


def test_sweeper_requeues_dead_workers_jobs_then_gives_up(session, qs) -> None:
    qs = qs.model_copy(update={"job_max_attempts": 2, "stale_after_s": 60.0})
    a = _user(session, 1)
    job = _submit(session, a, qs, SleepParams(seconds=0.01))
    first = claim_next(qs.database_url, "train", qs, "dead-worker")
    assert sweep(qs.database_url, qs).requeued == []  # fresh heartbeat: left alone
    later = utcnow() + timedelta(seconds=61)
    report = sweep(qs.database_url, qs, now=later)
    assert report.requeued == [job.id] and report.waiting["train"] == 1
    row = _reload(qs, job.id)
    assert row.state == "queued" and row.attempts == 1 and row.worker is None
    # The dead worker's late result is refused: its claim token is no longer the job's.
    assert not finish_job(qs.database_url, first, JobState.SUCCEEDED, notice=SleepDone(job_id=job.id))
    second = claim_next(qs.database_url, "train", qs, "dead-again")
    assert second.attempts == 2
    report = sweep(qs.database_url, qs, now=utcnow() + timedelta(seconds=61))
    assert report.failed == [job.id]
    row = _reload(qs, job.id)
    assert row.state == "failed" and "stopped 2 times" in row.error
    assert [(n.job_id, n.kind) for n in session.scalars(select(Notice))] == [(job.id, "job_failed")]


def test_notice_outbox_is_idempotent(session, qs) -> None:
    a = _user(session, 1)
    job = _submit(session, a, qs)
    first = add_notice(session, job, SleepDone(job_id=1))
    session.commit()
    again = add_notice(session, job, SleepDone(job_id=2))
    session.commit()
    assert again.id == first.id and again.payload == {"job_id": 1}
    other = add_notice(session, job, NoopDone(job_id=job.id))
    session.commit()
    assert [n.id for n in pending_notices(session, 10)] == [first.id, other.id]
    assert mark_sent(session, first.id)
    assert not mark_sent(session, first.id)  # a second delivery attempt is refused
    assert [n.id for n in pending_notices(session, 10)] == [other.id]


# Typed params: the only way to make a job, and what a worker reads back


def test_a_job_is_made_from_its_kinds_params_and_stored_as_json(session, qs) -> None:
    a = _user(session, 1)
    job = submit_job(session, a, TrainParams(upload_ids=(3, 1), options={"arch": "tiny"}, correction_of=3),
                     settings=qs, enqueue=False)
    stored = _reload(qs, job.id)
    assert stored.kind == "train"
    assert stored.params == {"upload_ids": [3, 1], "options": {"arch": "tiny"}, "correction_of": 3,
                             "activate": True}
    assert TrainParams.from_job(stored) == TrainParams(upload_ids=(3, 1), options={"arch": "tiny"},
                                                       correction_of=3)
    with pytest.raises(TypeError):  # no other way: a dict is not a kind's params
        submit_job(session, a, {"upload_ids": [1]}, settings=qs, enqueue=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds"):  # a field of the wrong type is refused
        submit_job(session, a, SleepParams(seconds="soon"), settings=qs, enqueue=False)  # type: ignore[arg-type]
    assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_rows_written_by_the_old_code_parse() -> None:
    """Params the old code wrote as free dicts (the same keys) read back as the typed classes."""
    train = {"upload_ids": [4, 5], "options": {"arch": "tiny", "iterations": 200, "augment": True,
                                              "device": "cpu"}, "correction_of": 5}
    assert parse_params("train", train) == TrainParams(upload_ids=(4, 5), options=train["options"],
                                                       correction_of=5)
    predict = {"upload_ids": [7], "model_id": 2, "threshold": None, "nm_per_px": 3.5,
               "scale_source": "the scale bar (confirmed by you)"}
    parsed = parse_params("predict", predict)
    assert isinstance(parsed, PredictParams)
    assert (parsed.upload_ids, parsed.model_id, parsed.nm_per_px, parsed.scale_bar) == ((7,), 2, 3.5, True)
    assert parse_params("predict", {"upload_ids": [7], "model_id": 2, "scale_bar": False}).scale_bar is False


@pytest.mark.parametrize("kind, raw, why", [
    ("predict", {"upload_ids": [1]}, "model_id"),  # a required field missing
    ("predict", {"upload_ids": [1], "model_id": 1, "treshold": 0.5}, "treshold"),  # a misspelt key
    ("train", {"upload_ids": ["one"]}, "upload_ids"),  # the wrong type
    ("train", {"options": {"arch": "huge"}}, "unknown architecture"),  # options no training can use
    ("nothere!", {}, "does not know jobs of kind"),
])
def test_a_row_that_does_not_fit_is_a_params_error_with_a_user_message(kind, raw, why) -> None:
    with pytest.raises(ParamsError, match=why) as caught:
        parse_params(kind, raw)
    assert "KeyError" not in str(caught.value)


def test_kinds_are_checked_where_a_params_class_is_declared() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        @dataclass(frozen=True, kw_only=True)
        class Spaced(JobParams, kind="no such kind!"):
            pass
    with pytest.raises(ValueError, match="taken by"):  # one class per kind: a typo cannot shadow train
        @dataclass(frozen=True, kw_only=True)
        class Impostor(JobParams, kind="train"):
            pass
    assert parse_params("train", {}) == TrainParams()


def test_a_stored_row_the_worker_cannot_read_fails_its_job_with_a_message(session, qs) -> None:
    a = _user(session, 1)
    broken = Job(user_id=a.id, kind="sleep", params={"seconds": "soon"}, state="queued", created_at=utcnow())
    session.add(broken)
    session.commit()
    assert drain(qs, "train") == 1
    failed = _reload(qs, broken.id)
    assert failed.state == "failed" and failed.started_at is not None
    assert "settings cannot be read" in failed.error and "seconds" in failed.error
    assert session.scalar(select(Notice.kind).where(Notice.job_id == broken.id)) == "job_failed"


def test_a_frozen_holder_of_the_queue_lock_does_not_stall_the_other_hosts(postgres_url, monkeypatch) -> None:
    """A worker frozen inside its locked transaction (a stopped process, a paused VM: its connection
    stays up) held the advisory lock for as long as it stayed frozen, and every claim, finish and sweep
    of every host waited behind it. PostgreSQL now ends a session idle that long in that transaction."""
    import threading
    import time

    from jobqueue import store
    from storage.migrate import upgrade

    upgrade(postgres_url)
    monkeypatch.setattr(store, "LOCK_IDLE_TIMEOUT_S", 1.5, raising=False)
    db = session_factory(postgres_url)
    held, release = threading.Event(), threading.Event()

    def frozen() -> None:
        try:
            with store.locked_session(db):
                held.set()
                release.wait(30)  # takes the lock, then answers nothing
        except Exception:  # noqa: BLE001 - its session was ended: what a frozen worker finds on waking
            pass

    thread = threading.Thread(target=frozen, daemon=True)
    thread.start()
    assert held.wait(10)
    started = time.monotonic()
    with store.locked_session(db) as session:  # another host's sweep or claim
        session.scalar(select(func.count()).select_from(Job))
    waited = time.monotonic() - started
    release.set()
    thread.join(10)
    assert 1.0 <= waited < 15, waited  # it waited for the timeout, not for the frozen one to wake
