"""Health of everything a segbot process depends on, one line each (`segbot health`).

Each check is quick (a few seconds at most) and reports, never raises: the container health
checks and the operator read the same lines.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.logs import redact
from core.settings import Settings

TIMEOUT_S = 5.0
CHECK_NAMES = ("database", "broker", "file-store", "gpu", "bot-api")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAIL'} - {redact(self.detail)}"


def hide_password(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL (redis://, amqp://)
        return redact(url)


def _error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{error.__class__.__name__}: {text}"[:300]


def check_database(settings: Settings) -> Check:
    from sqlalchemy import text

    from storage.db import make_engine
    from storage.migrate import head_revision

    url = settings.database_url
    engine = make_engine(url) if url.startswith("sqlite") else _pg_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            from alembic.runtime.migration import MigrationContext

            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as error:  # noqa: BLE001
        return Check("database", False, f"{hide_password(url)} unreachable ({_error(error)})")
    finally:
        engine.dispose()
    head = head_revision(url)
    where = f"{engine.dialect.name} {hide_password(url)}"
    if current != head:
        return Check("database", False, f"{where} schema at {current or 'nothing'}, code needs {head}: "
                                        "run `segbot migrate`")
    return Check("database", True, f"{where} at {current}")


def _pg_engine(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(url, connect_args={"connect_timeout": int(TIMEOUT_S)})


def check_broker(settings: Settings) -> Check:
    url = settings.broker_url
    if settings.broker_is_embedded:
        path = settings.data_dir
        ok = os.access(path, os.W_OK)
        detail = f"embedded (SQLite file in {path})"
        return Check("broker", ok, detail if ok else detail + ": directory not writable")
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=TIMEOUT_S) as connection:
                connection.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
    except Exception as error:  # noqa: BLE001
        return Check("broker", False, f"{hide_password(url)} unreachable ({_error(error)})")
    return Check("broker", True, f"{hide_password(url)} answers")


def check_file_store(settings: Settings) -> Check:
    root = settings.files_dir
    try:
        from storage.stores import open_store

        store = open_store(settings)
        store.check_writable()
        usage = shutil.disk_usage(root)  # the folder, or the object store's local cache
    except Exception as error:  # noqa: BLE001
        where = settings.store_url or root
        return Check("file-store", False, f"{where} not writable ({_error(error)})")
    free_gb = usage.free / 1e9
    ok = usage.free >= 1e9 or usage.free / max(usage.total, 1) >= 0.05
    where = f"{store.describe()} (cache {root})" if settings.store_url else str(root)
    detail = f"{where} writable, {free_gb:.1f} GB free of {usage.total / 1e9:.1f} GB"
    return Check("file-store", ok, detail if ok else detail + ": disk almost full, run `segbot clean`")


def check_gpu(settings: Settings) -> Check:
    if not settings.device.startswith("cuda"):
        return Check("gpu", True, f"not used (SEGBOT_DEVICE={settings.device})")
    try:
        import torch

        if not torch.cuda.is_available():
            return Check("gpu", False, f"SEGBOT_DEVICE={settings.device} but torch {torch.__version__} "
                                       "sees no CUDA device")
        device = torch.device(settings.device)
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            return Check("gpu", False, f"{settings.device} requested, {torch.cuda.device_count()} visible")
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
    except Exception as error:  # noqa: BLE001
        return Check("gpu", False, f"{settings.device}: {_error(error)}")
    return Check("gpu", True, f"cuda:{index} {name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")


def check_bot_api(settings: Settings) -> Check:
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value().strip():
        return Check("bot-api", True, "not configured (no TELEGRAM_BOT_TOKEN)")
    base = settings.telegram_api_base_url
    try:
        token = settings.token
        with urllib.request.urlopen(f"{base}{token}/getMe", timeout=TIMEOUT_S) as response:  # noqa: S310
            answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        reason = "token rejected" if error.code in (401, 404) else f"HTTP {error.code}"
        return Check("bot-api", False, f"{base} answers {reason}")
    except Exception as error:  # noqa: BLE001
        return Check("bot-api", False, f"{base} unreachable ({_error(error)})")
    if not answer.get("ok"):
        return Check("bot-api", False, f"{base} getMe not ok: {answer.get('description', '?')}")
    return Check("bot-api", True, f"{base} getMe: @{answer.get('result', {}).get('username', '?')}")


CHECKS: dict[str, Callable[[Settings], Check]] = {
    "database": check_database,
    "broker": check_broker,
    "file-store": check_file_store,
    "gpu": check_gpu,
    "bot-api": check_bot_api,
}


def run_checks(settings: Settings, skip: Iterable[str] = ()) -> list[Check]:
    skipped = set(skip)
    results = []
    for name, check in CHECKS.items():
        if name in skipped:
            continue
        try:
            results.append(check(settings))
        except Exception as error:  # noqa: BLE001 - a check must report, never crash the command
            results.append(Check(name, False, _error(error)))
    return results
