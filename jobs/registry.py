"""Which body runs which kind of job in this process: the product's (train, predict), registered
when this module is imported, and any a test or benchmark registers the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic

from jobs.context import Body
from jobs.params import P, PredictParams, TrainParams


@dataclass(frozen=True)
class JobType(Generic[P]):
    """A kind's params class and the body that runs its jobs."""

    params: type[P]
    body: Body[P]


BODIES: dict[str, JobType[Any]] = {}  # kind -> what runs it in this process


def register(params: type[P]) -> Callable[[Body[P]], Body[P]]:
    """Decorator: the body for jobs whose params are `params` (of its kind). Tests register their fake
    kinds the same way; registering a kind again replaces its body (bench/load_worker.py)."""

    def add(body: Body[P]) -> Body[P]:
        BODIES[params.kind] = JobType(params, body)
        return body

    return add


def _register_product_bodies() -> None:
    # Imported lazily inside the bodies: torch and mmdet load only when a job runs.
    from jobs.predict import predict_job
    from jobs.train import train_job

    register(TrainParams)(train_job)
    register(PredictParams)(predict_job)


_register_product_bodies()
