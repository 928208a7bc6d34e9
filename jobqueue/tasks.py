"""Celery tasks: thin wrappers over jobqueue.runner (which takes ids and works on storage)."""

from __future__ import annotations

from celery import Celery

from jobqueue.celery_app import TASK_NAME


def register_tasks(app: Celery) -> None:
    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def run_queue(queue: str) -> int:
        """Claim and run jobs of `queue` in fair order until none is claimable; returns how many ran."""
        from core.settings import get_settings
        from jobqueue.runner import drain

        return drain(get_settings(), queue)
