"""`segbot health`: one line per dependency and a non-zero exit when any is down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

import pytest

from core.settings import load_settings
from ops.health import run_checks
from storage.migrate import upgrade
from tests.services import need_service, port_open

TOKEN = "123456789:AAHk3m9Q-abcdefghijklmnopqrstuvwxyz_0"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def _segbot(env_extra: dict[str, str], cwd, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL", "TELEGRAM_BOT_TOKEN")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "segbot", "health", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_stopped_redis_is_unhealthy(settings) -> None:
    upgrade(settings.database_url)
    port = _closed_port()
    env = {"SEGBOT_DATA_DIR": str(settings.data_dir), "SEGBOT_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    proc = _segbot(env, settings.data_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert list(lines) == ["database", "broker", "file-store", "gpu", "bot-api"]
    assert lines["broker"].startswith(f"FAIL - redis://127.0.0.1:{port}/0 unreachable")
    assert lines["database"].startswith("ok - sqlite")
    assert lines["file-store"].startswith("ok - ") and "writable" in lines["file-store"]
    assert lines["gpu"] == "ok - not used (SEGBOT_DEVICE=cpu)"
    assert lines["bot-api"] == "ok - not configured (no TELEGRAM_BOT_TOKEN)"
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_everything_up_exits_zero(settings, redis_url, postgres_url) -> None:
    upgrade(postgres_url)
    env = {"SEGBOT_DATA_DIR": str(settings.data_dir), "SEGBOT_BROKER_URL": redis_url,
           "DATABASE_URL": postgres_url}
    proc = _segbot(env, settings.data_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"broker: ok - {redis_url} answers" in proc.stdout
    assert "database: ok - postgresql" in proc.stdout


def test_unmigrated_or_unreachable_database_is_unhealthy(settings, monkeypatch) -> None:
    checks = {c.name: c for c in run_checks(settings, skip=["gpu", "bot-api"])}
    assert not checks["database"].ok and "run `segbot migrate`" in checks["database"].detail
    assert checks["broker"].ok and checks["broker"].detail.startswith("embedded")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://segbot:pw@127.0.0.1:{_closed_port()}/segbot")
    checks = {c.name: c for c in run_checks(load_settings(), skip=["gpu", "bot-api"])}
    assert not checks["database"].ok and "unreachable" in checks["database"].detail
    assert "pw" not in checks["database"].line()


class _FakeBotApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        good = self.path == f"/bot{TOKEN}/getMe"
        body = json.dumps({"ok": True, "result": {"username": "segbot_test_bot"}} if good
                          else {"ok": False, "description": "Unauthorized"}).encode()
        self.send_response(200 if good else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bot_api():
    server = HTTPServer(("127.0.0.1", 0), _FakeBotApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/bot"
    server.shutdown()
    server.server_close()


def test_bot_api_getme(settings, monkeypatch, bot_api) -> None:
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", bot_api)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    [check] = [c for c in run_checks(load_settings()) if c.name == "bot-api"]
    assert check.ok and check.detail.endswith("@segbot_test_bot")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:" + "x" * 35)
    [check] = [c for c in run_checks(load_settings()) if c.name == "bot-api"]
    assert not check.ok and "token rejected" in check.detail and "x" * 35 not in check.line()
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", f"http://127.0.0.1:{_closed_port()}/bot")
    [check] = [c for c in run_checks(load_settings()) if c.name == "bot-api"]
    assert not check.ok and "unreachable" in check.detail


@pytest.mark.slow
def test_gpu_requested_without_cuda_is_unhealthy(settings, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    monkeypatch.setenv("SEGBOT_DEVICE", "cuda:0")
    [check] = [c for c in run_checks(load_settings()) if c.name == "gpu"]
    assert not check.ok and "sees no CUDA device" in check.detail


def test_amqp_broker(settings, monkeypatch) -> None:
    url = os.environ.get("SEGBOT_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
    # Whether RabbitMQ is there is asked apart from the check under test: a check that fails
    # against a running RabbitMQ is a failure, never a skip.
    where = urlsplit(url)
    if not port_open(where.hostname or "127.0.0.1", where.port or 5672):
        need_service(f"RabbitMQ at {where.hostname}:{where.port or 5672}", "is not reachable")
    monkeypatch.setenv("SEGBOT_BROKER_URL", url)
    [check] = [c for c in run_checks(load_settings()) if c.name == "broker"]
    assert check.ok, check.line()
    assert "answers" in check.line() and ":guest@" not in check.line()  # password hidden
    monkeypatch.setenv("SEGBOT_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{_closed_port()}//")
    [check] = [c for c in run_checks(load_settings()) if c.name == "broker"]
    assert not check.ok and "unreachable" in check.detail
