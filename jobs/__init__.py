"""Job bodies: plain functions that take a JobContext (ids, params, storage, progress and cancel
checks), read inputs from storage, run the trainer or inference and return an Outcome. The queue
(jobqueue.runner) claims jobs and calls the body for the job's kind from BODIES."""

from __future__ import annotations

from collections.abc import Callable

from jobs.context import Body

BODIES: dict[str, Body] = {}


def register(kind: str) -> Callable[[Body], Body]:
    """Decorator: the body for jobs of `kind` (tests add fake kinds the same way)."""

    def add(body: Body) -> Body:
        BODIES[kind] = body
        return body

    return add


def _register_product_bodies() -> None:
    # Imported lazily inside the bodies: torch and mmdet load only when a job runs.
    from jobs.predict import predict_job
    from jobs.train import train_job

    register("train")(train_job)
    register("predict")(predict_job)


_register_product_bodies()
