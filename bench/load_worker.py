"""`segbot worker` whose train and predict bodies are fakes (a short sleep, then a notice that
names the job): bench_load.py measures the bot and the queue, not the model.

    python -m bench.load_worker worker --queues train,predict   (repo root on PYTHONPATH)
"""

from __future__ import annotations

import random
import time

from jobs import register
from jobs.context import JobContext, Outcome
from segbot.cli import main


def fake_job(ctx: JobContext) -> Outcome:
    seconds = random.uniform(0.05, 0.4)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        ctx.progress((time.monotonic() - started) / seconds, "working")
        ctx.check()
        time.sleep(0.05)
    text = f"bench: job #{ctx.job_id} done"
    return Outcome(result={"fake": True}, notice_kind="bench_done", notice_payload={"text": text})


register("train")(fake_job)
register("predict")(fake_job)

if __name__ == "__main__":
    main()
