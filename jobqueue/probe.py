"""A worker measures its machine once: at start-up, when no probe of this host and worker kind is
stored and no train job of the bot's default kind has finished, a child process times a few training
iterations (trainer/probe.py) and stores them in `speed_probes`; jobqueue/estimates.py uses that
figure until real jobs have one. A child, so the worker's main process stays small and a probe
that fails (logged) costs nothing else. Not niced: a job runs at the worker's priority, and a niced
probe on a loaded machine would measure the other processes' share, not the job's."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.settings import Settings
from jobqueue.estimates import Rates, device_kind
from segmodel.options import TrainOptions
from storage.db import session_scope
from storage.models import SpeedProbe

log = logging.getLogger(__name__)

def probe_options(settings: Settings) -> TrainOptions:
    """The bot's default training on this worker's device: the estimate a new user sees first."""
    return TrainOptions(device=settings.device)


def probe_due(session: Session, host: str, options: TrainOptions) -> bool:
    """No probe of this host and worker kind yet, and no finished job that gives the figure anyway."""
    kind = device_kind(options.device)
    stored = session.scalar(select(SpeedProbe.id)
                            .where(SpeedProbe.host == host, SpeedProbe.device_kind == kind).limit(1))
    if stored is not None:
        return False
    rate = Rates(session).rate((kind, options.arch, int(options.batch_size), int(options.crop_size)))
    return rate is None or rate.source != "jobs"


def record_probe(session: Session, host: str, timing: dict[str, Any]) -> SpeedProbe:
    row = SpeedProbe(host=host, device_kind=str(timing["device_kind"]), timing=dict(timing))
    session.add(row)
    session.flush()
    return row


def run_probe(settings: Settings, host: str | None = None) -> dict[str, Any] | None:
    """Measure and store when due; the stored timing, or None when nothing was due."""
    from trainer.probe import measure_speed
    from trainer.threads import ThreadPlan

    host = host or socket.gethostname()
    options = probe_options(settings)
    with session_scope(settings.database_url) as session:
        if not probe_due(session, host, options):
            return None
    timing = measure_speed(options, ThreadPlan.from_settings(settings))
    with session_scope(settings.database_url) as session:
        record_probe(session, host, timing)
    log.info("speed probe on %s: %.3f s per iteration on %s thread(s), setup %.1f s", host,
             timing["sec_per_iter"], timing.get("threads"), timing["setup_s"])
    return timing


def start_probe(settings: Settings, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """`python -m jobqueue.probe` in the background (the caller's env names the database), unless
    turned off (SEGBOT_SPEED_PROBE=0)."""
    if not settings.speed_probe:
        return None
    return subprocess.Popen([sys.executable, "-m", "jobqueue.probe"], env=env)


def main() -> None:
    from core.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_probe(get_settings())
    except Exception:  # noqa: BLE001 - the estimates fall back to the benchmark table
        log.warning("speed probe failed", exc_info=True)


if __name__ == "__main__":
    main()
