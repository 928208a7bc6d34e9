"""The broker's queues: recognition has its own (many may run at once); everything else is training."""

from __future__ import annotations

from storage.models import JobKind

QUEUES = ("train", "predict")


def queue_for(kind: str) -> str:
    """The queue a job of this kind waits in."""
    return "predict" if kind == JobKind.PREDICT else "train"
