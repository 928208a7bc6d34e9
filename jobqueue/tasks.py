"""Celery tasks: thin wrappers over jobqueue.runner (which takes ids and works on storage)."""

from __future__ import annotations

from celery import Celery

from core.settings import Settings
from jobqueue.celery_app import TASK_NAME


def register_tasks(app: Celery, settings: Settings) -> None:
    """Register the queue task; it runs with the `settings` the worker started with.

    The task closes over them: the prefork pool forks its children after this call, so each child
    holds the same object and no task reads the environment again. shared=False: Celery's default
    shares a task with every app made later in the process, which would run this closure (these
    settings) in another app's worker.
    """

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True, shared=False)
    def run_queue(queue: str) -> int:
        """Claim and run jobs of `queue` in fair order until none is claimable; returns how many ran."""
        from jobqueue.runner import drain

        return drain(settings, queue)
