"""jobqueue/estimates.py: training time from measured seconds per iteration (the median of the last
finished jobs of that worker kind and preset, else the benchmark's table), the iteration count the
trainer really runs, and the wait behind the jobs ahead. The real training check is in
tests/test_estimates_real.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobqueue import estimates
from jobqueue.estimates import (
    BENCHMARK_RATES,
    Rates,
    estimate_training,
    planned_iterations,
    wait_ahead,
)
from segmodel.options import DEFAULT_ITERATIONS, TrainOptions
from storage.db import session_scope
from storage.migrate import upgrade
from storage.models import Job, JobState, SpeedProbe, Upload, User, utcnow


@pytest.fixture
def db(settings):
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        user = User(telegram_id=5)
        session.add(user)
        session.flush()
        yield session, user


def _finished(session, user, sec_per_iter, *, kind="cpu", arch="tiny", setup=10.0, minutes_ago=0,
              batch=2, crop=256, state=JobState.SUCCEEDED.value):
    timing = {"sec_per_iter": sec_per_iter, "setup_s": setup, "device_kind": kind, "arch": arch,
              "batch_size": batch, "crop_size": crop, "iterations": 600, "threads": 2}
    job = Job(user_id=user.id, kind="train", state=state, params={"options": {"arch": arch}},
              result={"timing": timing}, finished_at=utcnow() - timedelta(minutes=minutes_ago))
    session.add(job)
    session.flush()
    return job


def test_the_median_of_the_last_five_finished_jobs_of_that_kind_and_preset(db) -> None:
    session, user = db
    for minutes_ago, per in enumerate([2.0, 1.0, 9.0, 1.2, 1.1, 50.0, 50.0]):  # the last two are old
        _finished(session, user, per, minutes_ago=minutes_ago, setup=4.0 + minutes_ago)
    _finished(session, user, 0.1, kind="cuda")  # another kind of worker
    _finished(session, user, 7.0, arch="r50")  # another preset
    _finished(session, user, 0.01, batch=1, crop=128)  # other batch / crop size
    _finished(session, user, 0.02, state=JobState.FAILED.value)  # failed: not a figure
    rate = Rates(session).rate(("cpu", "tiny", 2, 256))
    assert rate.source == "jobs" and rate.n_jobs == 5
    assert rate.sec_per_iter == 1.2  # median of 2.0, 1.0, 9.0, 1.2, 1.1: one outlier does not move it
    assert rate.setup_s == 6.0
    estimate = estimate_training(session, {"arch": "tiny"}, "cpu")
    assert estimate.iterations == DEFAULT_ITERATIONS["tiny"] == 600
    assert estimate.seconds == pytest.approx(6.0 + 600 * 1.2)
    assert estimate.minutes == 12
    assert Rates(session).rate(("cuda", "tiny", 2, 256)).sec_per_iter == 0.1
    assert estimate_training(session, {"arch": "tiny", "device": "cuda:1"}).rate.sec_per_iter == 0.1


def test_no_finished_job_falls_back_to_the_benchmark_table(db) -> None:
    session, _user = db
    per, setup = BENCHMARK_RATES[("cpu", "tiny")]
    estimate = estimate_training(session, {"arch": "tiny", "iterations": None}, "cpu")
    assert estimate.rate.source == "benchmark"
    assert estimate.seconds == pytest.approx(setup + 600 * per)
    # batch 1 of 128 px crops: an eighth of the pixels per iteration
    small = estimate_training(session, {"arch": "tiny", "batch_size": 1, "crop_size": 128}, "cpu")
    assert small.rate.sec_per_iter == pytest.approx(per / 8)


def test_a_preset_the_benchmark_did_not_measure_has_no_made_up_figure(db, monkeypatch) -> None:
    session, user = db
    monkeypatch.setattr(estimates, "BENCHMARK_RATES", {})
    estimate = estimate_training(session, {"arch": "x101"}, "cuda")
    assert estimate.seconds is None and estimate.minutes is None and estimate.iterations == 3000
    _finished(session, user, 0.5, kind="cuda", arch="x101", setup=20.0)
    assert estimate_training(session, {"arch": "x101"}, "cuda").seconds == pytest.approx(20 + 3000 * 0.5)


def test_planned_iterations_are_the_trainers() -> None:
    assert planned_iterations(TrainOptions(arch="r50")) == 3000
    assert planned_iterations(TrainOptions(iterations=200, epochs=5)) == 200  # iterations win
    # epochs: one epoch shows every labelled pixel once (trainer.dataset.iterations_per_epoch)
    summary = {"whole_image": False, "width": 2000, "height": 2000,
               "crops": [{"width": 512, "height": 512, "mean_d_px": 30.0}]}
    # 512x512 at rescale 1 (30 px objects) = 4 crops of 256 px = 2 batches of 2 per epoch
    assert planned_iterations(TrainOptions(epochs=10), [summary]) == 20
    assert planned_iterations(TrainOptions(epochs=10, rescale=2.0), [summary]) == 80


def test_epochs_read_the_uploads_summaries(db) -> None:
    session, user = db
    summary = {"whole_image": True, "width": 512, "height": 256, "crops": []}
    upload = Upload(user_id=user.id, kind="labelme", original_name="a.json", sha256="0" * 64, size=1,
                    summary=summary)
    session.add(upload)
    session.flush()
    estimate = estimate_training(session, {"epochs": 3, "rescale": 1.0}, "cpu", [upload.id])
    assert estimate.iterations == 3  # 512x256 = 2 crops = 1 batch per epoch


def test_the_wait_sums_the_running_job_and_the_jobs_ahead(db) -> None:
    session, user = db
    other = User(telegram_id=6)
    session.add(other)
    session.flush()
    for _ in range(3):
        _finished(session, user, 1.0, setup=0.0, minutes_ago=10)
    running = Job(user_id=other.id, kind="train", state=JobState.RUNNING.value, eta_s=300.0,
                  params={"options": {"arch": "tiny", "device": "cpu"}}, started_at=utcnow())
    session.add(running)
    ahead = Job(user_id=other.id, kind="train", state=JobState.QUEUED.value, created_at=utcnow(),
                params={"options": {"arch": "tiny", "iterations": 120, "device": "cpu"}})
    session.add(ahead)
    session.flush()
    mine = Job(user_id=user.id, kind="train", state=JobState.QUEUED.value, created_at=utcnow(),
               params={"options": {"arch": "tiny", "device": "cpu"}})
    session.add(mine)
    session.flush()
    # fair order: `other` has a job started just now, so `user` (never started one) goes first
    first = wait_ahead(session, mine)
    assert first.ahead == 1 and first.seconds == pytest.approx(300.0)  # only the running one
    later = wait_ahead(session, ahead)
    assert later.ahead == 2 and later.seconds == pytest.approx(300 + 600 * 1.0)
    running.eta_s = None
    running.progress = 0.5  # no ETA yet: half of its estimate is left
    assert wait_ahead(session, mine).seconds == pytest.approx(300.0)
    assert wait_ahead(session, running) is None


def test_the_job_timing_record_is_what_the_estimates_read() -> None:
    from jobs.train import timing_record

    metrics = {"timing": {"sec_per_iter": 1.3, "loop_s": 13.0, "setup_s": 2.0, "threads": 2}}
    record = timing_record(metrics, TrainOptions(device="cuda:0", batch_size=1), 10, 20.0)
    assert record["device_kind"] == "cuda" and record["arch"] == "tiny" and record["batch_size"] == 1
    assert record["setup_s"] == 7.0 and record["seconds"] == 20.0 and record["threads"] == 2
    assert estimates._matches(record, ("cuda", "tiny", 1, 256))


def _probe(session, sec_per_iter, *, host="worker-1", kind="cpu", setup=5.0, minutes_ago=0):
    timing = {"sec_per_iter": sec_per_iter, "setup_s": setup, "device_kind": kind, "arch": "tiny",
              "batch_size": 2, "crop_size": 256, "iterations": 8, "probe_iterations": 6, "threads": 2}
    session.add(SpeedProbe(host=host, device_kind=kind, timing=timing,
                           measured_at=utcnow() - timedelta(minutes=minutes_ago)))
    session.flush()


def test_a_new_install_estimates_from_its_probe_not_the_benchmark_table(db) -> None:
    session, user = db
    assert estimate_training(session, {"arch": "tiny"}, "cpu").rate.source == "benchmark"
    _probe(session, 9.0, host="old", minutes_ago=60)  # older than the RECENT newest: not read
    for host, per in [("a", 0.5), ("b", 0.6), ("c", 0.4), ("d", 0.55), ("e", 0.45)]:
        _probe(session, per, host=host)
    estimate = estimate_training(session, {"arch": "tiny"}, "cpu")
    assert estimate.rate.source == "probe" and estimate.rate.n_jobs == 5
    assert estimate.seconds == pytest.approx(5.0 + 600 * 0.5)  # median of the five newest
    assert estimate.minutes == 5
    # batch 1 of 128 px crops: an eighth of the pixels the probe measured per iteration
    small = estimate_training(session, {"arch": "tiny", "batch_size": 1, "crop_size": 128}, "cpu")
    assert small.rate.source == "probe" and small.rate.sec_per_iter == pytest.approx(0.5 / 8)
    assert estimate_training(session, {"arch": "tiny"}, "cuda").rate is None  # no GPU probed
    _finished(session, user, 0.8)  # the first finished job's own figure wins from then on
    assert estimate_training(session, {"arch": "tiny"}, "cpu").rate.source == "jobs"


def test_the_probe_runs_once_per_machine_and_not_after_jobs_measured(settings, monkeypatch) -> None:
    from jobqueue import probe
    from trainer import probe as trainer_probe

    upgrade(settings.database_url)
    calls = []

    def measured(options, threads=None):  # the real measure is timed in test_a_worker_probes_...
        calls.append(options)
        return {"sec_per_iter": 0.42, "setup_s": 3.0, "device_kind": "cpu", "arch": options.arch,
                "batch_size": options.batch_size, "crop_size": options.crop_size, "threads": 2}

    monkeypatch.setattr(trainer_probe, "measure_speed", measured)
    assert probe.run_probe(settings, host="lab-pc")["sec_per_iter"] == 0.42
    assert probe.run_probe(settings, host="lab-pc") is None  # measured once
    assert len(calls) == 1 and calls[0].arch == "tiny" and calls[0].batch_size == 2
    with session_scope(settings.database_url) as session:
        assert estimate_training(session, {"arch": "tiny"}, "cpu").seconds == pytest.approx(3.0 + 600 * 0.42)
        user = User(telegram_id=6)
        session.add(user)
        session.flush()
        _finished(session, user, 1.0)
    assert probe.run_probe(settings, host="second-pc") is None  # a job measured this kind already
    assert len(calls) == 1


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_probes_its_machine_at_start_up(settings) -> None:
    """A fresh install: `segbot worker` starts, times a few real iterations, and the first estimate
    a user would see comes from them."""
    import os
    import time

    from jobqueue.worker import start_worker_process

    upgrade(settings.database_url)
    worker = start_worker_process(settings, ("train",), env={**os.environ, "SEGBOT_SPEED_PROBE": "1"},
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            with session_scope(settings.database_url) as session:
                row = session.query(SpeedProbe).first()
                if row is not None:
                    break
            assert worker.poll() is None, "the worker stopped"
            time.sleep(1.0)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
    assert row is not None, "no probe stored"
    timing = row.timing
    assert timing["device_kind"] == "cpu" and timing["arch"] == "tiny" and timing["probe_iterations"] == 6
    assert 0.01 < timing["sec_per_iter"] < 30 and timing["threads"] >= 1
    with session_scope(settings.database_url) as session:
        estimate = estimate_training(session, {"arch": "tiny"}, "cpu")
    assert estimate.rate.source == "probe"
    assert estimate.seconds == pytest.approx(timing["setup_s"] + 600 * timing["sec_per_iter"])
    print(f"probe: {timing['sec_per_iter']:.3f} s/it on {timing['threads']} thread(s), setup "
          f"{timing['setup_s']:.1f} s; first estimate {estimate.seconds:.0f} s for 600 iterations")
