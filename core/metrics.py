"""Prometheus metrics shared by the bot and the workers, and the HTTP endpoint that serves them.

Each process serves its own /metrics on SEGBOT_METRICS_PORT. A worker whose tasks run in child
processes (Celery prefork) sets PROMETHEUS_MULTIPROC_DIR so the children's numbers are collected.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, float("inf"))

JOBS_TOTAL = Counter("segbot_jobs_total", "Jobs finished, by kind and outcome (succeeded|failed|cancelled)",
                     ["kind", "outcome"])
JOB_SECONDS = Histogram("segbot_job_seconds", "Wall time of finished jobs in seconds", ["kind"],
                        buckets=_JOB_BUCKETS)
QUEUE_LENGTH = Gauge("segbot_queue_length", "Jobs waiting in the queue, by kind", ["kind"],
                     multiprocess_mode="livemax")
UPDATE_LATENCY = Histogram("segbot_update_latency_seconds",
                           "Time from a Telegram update arriving to the bot's first reply",
                           buckets=_LATENCY_BUCKETS)
ERRORS_TOTAL = Counter("segbot_errors_total", "Unexpected errors, by service (bot|worker|...)", ["service"])
GPU_MEMORY = Gauge("segbot_gpu_memory_bytes", "GPU memory reserved by PyTorch in this process",
                   multiprocess_mode="livemax")


def observe_job(kind: str, outcome: str, seconds: float | None) -> None:
    """Count one finished job (workers call this once per job)."""
    JOBS_TOTAL.labels(kind=kind, outcome=outcome).inc()
    if seconds is not None and seconds >= 0:
        JOB_SECONDS.labels(kind=kind).observe(seconds)


def update_gpu_memory(device: str) -> int | None:
    """Read torch's reserved memory on `device` into GPU_MEMORY; None when no GPU is used."""
    if not device.startswith("cuda"):
        return None
    import torch  # only on GPU workers, which have loaded it anyway

    if not torch.cuda.is_available():
        return None
    reserved = int(torch.cuda.memory_reserved(torch.device(device)))
    GPU_MEMORY.set(reserved)
    return reserved


def _registry() -> CollectorRegistry | None:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None  # the default registry of this process
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve /metrics on `port` (0 picks a free one) in a daemon thread; returns the server
    (its `server_port` is the real port; `shutdown()` stops it)."""
    registry = _registry()
    if registry is None:
        server, _thread = start_http_server(port, addr=addr)
    else:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
