"""Shared fixtures: a private data dir and settings, migrated SQLite and PostgreSQL databases,
Redis. A missing PostgreSQL or Redis goes through tests.services.need_service: a skip here, a
failure under CI=true."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import need_service

PG_ADMIN_URL = os.environ.get("SEGBOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SEGBOT_TEST_REDIS", "redis://127.0.0.1:6379")
# Workers the tests start do not time training iterations at start-up (jobqueue/probe.py): 15 s of
# CPU each; tests/test_estimates.py turns it on where it is the subject.
os.environ.setdefault("SEGBOT_SPEED_PROBE", "0")
REPO = Path(__file__).resolve().parent.parent


def _unavailable(what: str, error: Exception) -> None:
    need_service(what, f"is not reachable ({error.__class__.__name__}: {error})")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings pointing at a private data dir (SQLite, embedded broker) for this test."""
    from core import settings as settings_module

    for name in ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL", "TELEGRAM_BOT_TOKEN", "SEGBOT_BASE_MODEL",
                 "SEGBOT_COCO_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEGBOT_DATA_DIR", str(data_dir))
    # Tests train tiny models from random weights unless they ask for the shipped base model.
    monkeypatch.setenv("SEGBOT_BASE_MODEL", "none")
    monkeypatch.chdir(data_dir)  # no stray .env from the developer's checkout
    settings_module.get_settings.cache_clear()
    current = settings_module.get_settings()
    current.ensure_dirs()
    yield current
    settings_module.get_settings.cache_clear()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"segbot_t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection problem means "not there"
        admin.dispose()
        _unavailable("PostgreSQL at " + PG_ADMIN_URL.split("@")[-1], error)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    from storage.db import engine_for

    engine_for(url).dispose()
    engine_for.cache_clear()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database URL, once on SQLite and once on PostgreSQL."""
    from storage.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'segbot.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


@pytest.fixture
def redis_url() -> str:
    """Redis on 127.0.0.1:6379 (required under CI); each test gets a distinct key prefix via db 0."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as error:  # noqa: BLE001
        _unavailable("Redis at " + REDIS_URL, error)
    finally:
        client.close()
    return REDIS_URL


# S3-compatible object store: moto's standalone server on a free loopback port


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process (one per test session)."""
    import logging

    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        _unavailable("moto (pip install 'moto[server]')", error)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str) -> dict[str, str]:
    """A fresh bucket; the SEGBOT_STORE_* settings that select it."""
    import boto3

    bucket = f"segbot-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    return {"SEGBOT_STORE_URL": f"s3://{bucket}/segbot", "SEGBOT_STORE_ENDPOINT_URL": s3_endpoint,
            "SEGBOT_STORE_ACCESS_KEY": "testing", "SEGBOT_STORE_SECRET_KEY": "testing",
            "SEGBOT_STORE_REGION": "us-east-1"}


def make_s3_store(env: dict[str, str], cache_dir: Path):
    from storage.s3store import S3Store

    return S3Store(env["SEGBOT_STORE_URL"], cache_dir, endpoint_url=env["SEGBOT_STORE_ENDPOINT_URL"],
                   key=env["SEGBOT_STORE_ACCESS_KEY"], secret=env["SEGBOT_STORE_SECRET_KEY"],
                   region=env["SEGBOT_STORE_REGION"])


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path):
    """The same store tests on both backends: the local folder and S3 (moto)."""
    from storage.files import FileStore

    if request.param == "local":
        return FileStore(tmp_path / "files")
    return make_s3_store(request.getfixturevalue("s3_env"), tmp_path / "files")


# The Bot API stand-in and bot settings pointing at it: every test that runs the real PTB Application.
@pytest.fixture
def api():
    from tests.botapi.server import BotApiStandIn

    server = BotApiStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def bs(settings, api):
    from storage.migrate import upgrade
    from tests.botapi.harness import bot_settings

    s = bot_settings(settings, api)
    upgrade(s.database_url)
    return s
