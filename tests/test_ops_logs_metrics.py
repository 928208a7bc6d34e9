"""Logging (redaction everywhere, JSON with job/user ids) and the Prometheus endpoint."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from core.logs import redact, setup_logging

TOKEN = "123456789:AAHk3m9Q-abcdefghijklmnopqrstuvwxyz_0"  # the shape of a real bot token


@pytest.fixture
def log_stream(settings):
    stream = io.StringIO()
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.__class__.__name__ == "_SegbotHandler":
            root.removeHandler(handler)


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        (f"POST https://api.telegram.org/bot{TOKEN}/sendMessage failed", TOKEN),
        (f"GET http://bot-api:8081/file/bot{TOKEN}/documents/file_1.json", TOKEN),
        ("GET https://api.telegram.org/bot42:short/getMe", "42:short"),  # URL form: any length
        (f"token is {TOKEN}.", TOKEN),
        ("postgresql+psycopg://segbot:hunter2@db:5432/segbot", "hunter2"),
        ("redis://:s3cret@redis:6379/0", "s3cret"),
    ],
)
def test_redact_removes_secrets(text: str, leaked: str) -> None:
    cleaned = redact(text)
    assert leaked not in cleaned and "<redacted>" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    text = "job 12 for user 7 finished in 12:34, 600 particles, /bots/help"
    assert redact(text) == text


def test_every_record_is_redacted_including_exceptions(settings, log_stream) -> None:
    setup_logging(settings, "bot", stream=log_stream)
    log = logging.getLogger("httpx")
    log.warning("HTTP Request: POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    try:
        raise RuntimeError(f"cannot reach https://api.telegram.org/file/bot{TOKEN}/photos/x.jpg")
    except RuntimeError:
        logging.getLogger("bot.handlers").exception("download failed for %s", TOKEN)
    logging.getLogger("x").info("extra carries it too", extra={"url": f"/bot{TOKEN}/getMe"})
    logging.getLogger("x").info("nested", extra={"request": {"url": f"/bot{TOKEN}/getMe"}})
    out = log_stream.getvalue()
    assert TOKEN not in out and TOKEN.split(":")[1] not in out
    assert "RuntimeError" in out and "Traceback" in out  # the exception itself is kept
    assert out.count("<redacted>") >= 5


def test_json_lines_carry_job_and_user_ids(settings, log_stream, monkeypatch) -> None:
    settings.log_json = True
    setup_logging(settings, "worker", stream=log_stream)
    logging.getLogger("trainer").info("job %s started", 12, extra={"job_id": 12, "user_id": 7})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("trainer").error("failed", exc_info=True, extra={"job_id": 12})
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "job 12 started" and lines[0]["job_id"] == 12 and lines[0]["user_id"] == 7
    assert lines[0]["service"] == "worker" and lines[0]["level"] == "INFO"
    assert "ZeroDivisionError" in lines[1]["exc"] and lines[1]["job_id"] == 12


def test_text_format_shows_ids_and_setup_is_idempotent(settings, log_stream) -> None:
    setup_logging(settings, "bot", stream=io.StringIO())
    setup_logging(settings, "bot", stream=log_stream)
    ours = [h for h in logging.getLogger().handlers if h.__class__.__name__ == "_SegbotHandler"]
    assert len(ours) == 1
    logging.getLogger("bot").warning("slow reply", extra={"user_id": 7})
    line = log_stream.getvalue().strip()
    assert " WARNING bot bot: slow reply [user_id=7]" in line


def _scrape(port: int) -> dict[str, list]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(body)}


def _value(samples: list, name: str, **labels: str) -> float:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"{name} {labels} not scraped")


def test_metrics_endpoint_serves_parseable_metrics(db_url: str) -> None:
    from jobqueue.store import refresh_queue_lengths
    from storage.db import session_scope
    from storage.models import Job, User

    server = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        before = _scrape(server.server_port)
        ok_before = _value(before["segbot_jobs"], "segbot_jobs_total", kind="train", outcome="succeeded") \
            if any(s.labels.get("outcome") == "succeeded" and s.labels.get("kind") == "train"
                   for s in before.get("segbot_jobs", [])) else 0.0
        metrics.observe_job("train", "succeeded", 42.0)
        metrics.observe_job("predict", "failed", 3.0)
        metrics.ERRORS_TOTAL.labels(service="bot").inc()
        metrics.UPDATE_LATENCY.observe(0.3)
        with session_scope(db_url) as session:
            user = User(telegram_id=5)
            session.add(user)
            session.flush()
            session.add_all([Job(user_id=user.id, kind="predict"), Job(user_id=user.id, kind="predict"),
                             Job(user_id=user.id, kind="train", state="running")])
        with session_scope(db_url) as session:
            assert refresh_queue_lengths(session) == {"train": 0, "predict": 2}
        scraped = _scrape(server.server_port)
    finally:
        server.shutdown()
    assert _value(scraped["segbot_jobs"], "segbot_jobs_total", kind="train", outcome="succeeded") \
        == ok_before + 1
    assert _value(scraped["segbot_job_seconds"], "segbot_job_seconds_count", kind="predict") >= 1
    assert _value(scraped["segbot_job_seconds"], "segbot_job_seconds_bucket", kind="train", le="60.0") >= 1
    assert _value(scraped["segbot_queue_length"], "segbot_queue_length", kind="predict") == 2
    assert _value(scraped["segbot_queue_length"], "segbot_queue_length", kind="train") == 0
    assert _value(scraped["segbot_errors"], "segbot_errors_total", service="bot") >= 1
    assert _value(scraped["segbot_update_latency_seconds"], "segbot_update_latency_seconds_count") >= 1
    assert "segbot_gpu_memory_bytes" in scraped
    assert metrics.update_gpu_memory("cpu") is None


def test_grafana_dashboard_uses_only_real_metrics() -> None:
    from pathlib import Path

    from prometheus_client import REGISTRY, generate_latest

    exposed = {sample.name for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
               for sample in family.samples}
    exposed |= {f"{name}_bucket" for name in ("segbot_job_seconds", "segbot_update_latency_seconds")}
    dashboard = json.loads((Path(__file__).parent.parent / "deploy" / "grafana" / "segbot-dashboard.json")
                           .read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"segbot_[a-z_]+", target["expr"]))
    assert used and used <= exposed, used - exposed
    scrape = (Path(__file__).parent.parent / "deploy" / "prometheus.yml").read_text()
    assert "bot:9100" in scrape and "worker-gpu:9100" in scrape


def test_metrics_of_child_processes_are_collected(tmp_path, monkeypatch) -> None:
    """Celery prefork runs jobs in children: with PROMETHEUS_MULTIPROC_DIR their counts reach /metrics."""
    import subprocess
    import sys

    shared = tmp_path / "prom"
    shared.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    code = "from core.metrics import observe_job; observe_job('predict', 'succeeded', 7.0)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    server = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        scraped = _scrape(server.server_port)
    finally:
        server.shutdown()
    assert _value(scraped["segbot_jobs"], "segbot_jobs_total", kind="predict", outcome="succeeded") == 2
    assert _value(scraped["segbot_job_seconds"], "segbot_job_seconds_sum", kind="predict") == 14.0
