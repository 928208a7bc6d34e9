"""`segbot` with the fake job bodies of tests/queue_fakes.py registered: the queue tests and
bench_queue start real worker processes as `python -m tests.fake_worker worker ...` (repo root
on PYTHONPATH), so real processes and a real broker run fake work, and the product carries no
import hook for test code."""

from __future__ import annotations

import tests.queue_fakes  # noqa: F401 - registers the sleep/noop/fail/oom/crash bodies
from segbot.cli import main

if __name__ == "__main__":
    main()
