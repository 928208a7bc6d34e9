"""`segbot worker`: run training/recognition jobs from the shared queue."""

from __future__ import annotations

import os

import click

from segbot.errors import user_errors


@click.command("worker")
@click.option("--queues", "-Q", default="train,predict", show_default=True,
              help="Comma-separated queues to take jobs from: train, predict.")
@click.option("--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Jobs run at once (keep 1 for training on one GPU; recognition workers may run more).")
@click.option("--gpu", default=None, metavar="ID",
              help="Use this GPU only (sets CUDA_VISIBLE_DEVICES and the device to cuda).")
@click.option("--loglevel", default=None, help="Log level (default: SEGBOT_LOG_LEVEL).")
@user_errors
def worker(queues: str, concurrency: int, gpu: str | None, loglevel: str | None) -> None:
    """Run a worker. Start one per GPU (any number of machines) against the same broker,
    database and file store; jobs are shared fairly between them.

    \b
    Examples:
      segbot worker                         # both queues, one job at a time
      segbot worker --queues train --gpu 0  # training on GPU 0
      segbot worker --queues predict --gpu 1 --concurrency 2
    """
    from core.settings import get_settings
    from jobqueue.worker import parse_queues, run_worker

    try:
        names = parse_queues(queues)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--queues") from None
    if gpu is not None:
        if not gpu.strip().isdigit():
            raise click.BadParameter("a GPU number such as 0 or 1", param_hint="--gpu")
        # Before anything loads torch; the pool processes inherit both.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu.strip()
        os.environ["SEGBOT_DEVICE"] = "cuda"
        get_settings.cache_clear()
    settings = get_settings()
    if "train" in names and concurrency > 1 and settings.device.startswith("cuda"):
        raise click.UsageError("one training job per GPU: use --concurrency 1 with the train queue "
                               "(run a separate --queues predict worker for parallel recognition)")
    settings.ensure_dirs()
    _setup_logging(settings)
    run_worker(settings, names, concurrency, loglevel or settings.log_level)


def _setup_logging(settings) -> None:  # type: ignore[no-untyped-def]
    try:
        from core.logs import setup_logging
    except ImportError:  # the ops module is optional here
        import logging

        logging.basicConfig(level=settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    setup_logging(settings, "worker")
