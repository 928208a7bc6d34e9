"""`segbot worker` whose train and predict bodies are fakes (a short sleep, then a notice that
names the job): bench_load.py measures the bot and the queue, not the model.

    python -m bench.load_worker worker --queues train,predict   (repo root on PYTHONPATH)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from jobs.context import JobContext, Outcome
from jobs.params import PredictParams, TrainParams
from jobs.registry import register
from segbot.cli import main
from storage.notices import NoticePayload


@dataclass(frozen=True, kw_only=True)
class BenchDone(NoticePayload, kind="bench_done"):
    text: str  # the bot sends a notice kind it does not know as this text


def fake_job(ctx: JobContext[TrainParams] | JobContext[PredictParams]) -> Outcome:
    seconds = random.uniform(0.05, 0.4)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        ctx.progress((time.monotonic() - started) / seconds, "working")
        ctx.check()
        time.sleep(0.05)
    return Outcome(result={"fake": True}, notice=BenchDone(text=f"bench: job #{ctx.job_id} done"))


# The product's kinds and params (the bot submits them as usual); only the bodies are fakes.
register(TrainParams)(fake_job)
register(PredictParams)(fake_job)

if __name__ == "__main__":
    main()
