"""The first estimate a new user sees against the real time of her first training, on a fresh install.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/bench_first_estimate.py --iterations 80   # ~3 min

A fresh data dir (SQLite, the embedded broker): `segbot worker --queues train` starts as deployed and
times a few iterations of its machine (jobqueue/probe.py); then one user's training of a real
EMPS-dev image (two labelled 300 px crops, as bench_train_speed.py) goes through the queue with the
bot's default options (tiny, batch 2 x 256 px) and the given iteration count. Printed, from one run:
the estimate the benchmark table gives (what a new install showed before the probe), the estimate
from the probe (what it shows now), and the job's real time from queued to done (what she waits) and
from started to done. Goal (issue #30): the shown estimate within +-30 % of the real time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

print = functools.partial(print, flush=True)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import hardware  # noqa: E402
from bench_train_speed import labelled_sources  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "emps-dev"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    print(f"hardware: {hardware()}; load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="segbot-first-estimate-") as tmp:
        os.environ["SEGBOT_DATA_DIR"] = tmp
        for name in ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL"):
            os.environ.pop(name, None)
        run(args.iterations, args.data)


def run(iterations: int, data: Path) -> None:
    from core.settings import get_settings
    from jobqueue.estimates import benchmark_rate, estimate_job
    from jobqueue.store import aware, submit_job
    from jobqueue.worker import start_worker_process
    from jobs.params import TrainParams
    from storage.db import session_factory
    from storage.files import FileStore
    from storage.migrate import upgrade
    from storage.models import Job, SpeedProbe, Upload, User
    from trainer.synthetic import labelme_dict

    settings = get_settings()
    settings.ensure_dirs()
    upgrade(settings.database_url)
    data_bytes = json.dumps(labelme_dict(labelled_sources(data)[0], image_name="emps.png")).encode()
    began = time.monotonic()
    worker = start_worker_process(settings, ("train",), env={**os.environ, "SEGBOT_SPEED_PROBE": "1"},
                                  start_new_session=True)
    try:
        with session_factory(settings.database_url)() as session:
            while session.query(SpeedProbe).first() is None:
                if worker.poll() is not None or time.monotonic() - began > 300:
                    raise SystemExit("the worker stopped or stored no probe in 5 min")
                time.sleep(1.0)
                session.expire_all()
            probe = session.query(SpeedProbe).one().timing
            print(f"probe stored {time.monotonic() - began:.1f} s after the worker started: "
                  f"{probe['sec_per_iter']:.3f} s/it on {probe['threads']} thread(s), "
                  f"setup {probe['setup_s']:.1f} s")
            user = User(telegram_id=1, username="new")
            session.add(user)
            session.commit()
            upload = Upload(user_id=user.id, kind="labelme", original_name="emps.json",
                            sha256=FileStore(settings.files_dir).put_bytes(data_bytes), size=len(data_bytes))
            session.add(upload)
            session.commit()
            params = TrainParams(upload_ids=(upload.id,), options={"arch": "tiny", "iterations": iterations})
            job = submit_job(session, user, params, settings=settings)
            shown = estimate_job(session, job)
            assert shown is not None and shown.seconds is not None and shown.rate is not None
            table = benchmark_rate(("cpu", "tiny", 2, 256))
            assert table is not None
            before = table.setup_s + shown.iterations * table.sec_per_iter
            while job.state not in ("succeeded", "failed", "cancelled"):
                time.sleep(1.0)
                session.expire_all()
                job = session.get(Job, job.id)
            assert job.state == "succeeded", job.error
            waited = (aware(job.finished_at) - aware(job.created_at)).total_seconds()
            ran = (aware(job.finished_at) - aware(job.started_at)).total_seconds()
            timing = job.result["timing"]
        report(shown, before, waited, ran, timing)
    finally:
        os.killpg(worker.pid, 15)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait()


def report(shown, before: float, waited: float, ran: float, timing: dict) -> None:
    print(f"job of {shown.iterations} iterations: queued -> done {waited:.1f} s, "
          f"started -> done {ran:.1f} s; "
          f"its own {timing['sec_per_iter']:.3f} s/it on {timing.get('threads')} thread(s), setup "
          f"{timing['setup_s']:.1f} s (warm: {timing.get('warm')})")
    print(f"first estimate before (benchmark table): {before:.0f} s, {before / waited:.2f} x the real time")
    print(f"first estimate now ({shown.rate.source}): {shown.seconds:.0f} s, {shown.seconds / waited:.2f} x "
          f"the real time; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
