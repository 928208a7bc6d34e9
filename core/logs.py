"""Logging for every segbot process: one stderr handler, plain text or JSON, secrets redacted.

The redaction filter sits on the handler, so it sees every record that reaches the output,
whichever library logged it (httpx logs each Bot API URL, and the token is part of that URL).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings

REDACTED = "<redacted>"
# Bot API URLs carry the token: .../bot<token>/getMe and .../file/bot<token>/<path>.
_URL_TOKEN = re.compile(r"/(file/)?bot\d+(?::|%3A)[^/\s\"'?#]+", re.IGNORECASE)  # httpx logs %3A
# A bare token anywhere else (exception text, a repr of the settings, a user pasting it).
_BARE_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
# Passwords in service URLs (postgresql://user:pw@host, redis://:pw@host).
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Remove bot tokens, Bot API URLs' token part and URL passwords from a string."""
    if not text:
        return text
    text = _URL_TOKEN.sub(lambda m: f"/{m.group(1) or ''}bot{REDACTED}", text)
    text = _BARE_TOKEN.sub(REDACTED, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


class RedactFilter(logging.Filter):
    """Rewrites each record in place: message, exception text, stack, and string extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info != (None, None, None):
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            # Formatters would otherwise re-render the traceback from exc_info, unredacted.
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, service, msg, extras (job_id, user_id...), exc."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "msg": record.getMessage(),
        }
        for key, value in extras(record).items():
            entry.setdefault(key, value)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # Non-string extras (dicts, objects) were not rewritten by the filter: redact the line too.
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """`time LEVEL service logger: message [job_id=.. user_id=..]`, traceback below."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extras(record)
        if fields:
            head, sep, tail = line.partition("\n")
            tags = " ".join(f"{key}={value}" for key, value in sorted(fields.items()))
            line = f"{head} [{tags}]{sep}{tail}"
        return redact(line)


class _SegbotHandler(logging.StreamHandler):
    """Marks the handler we installed, so a second setup_logging() replaces it."""


def setup_logging(settings: Settings, service: str, stream: Any = None) -> logging.Handler:
    """Configure the root logger for one process (`bot`, `worker`, `cli`...)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _SegbotHandler):
            root.removeHandler(handler)
    handler = _SegbotHandler(stream or sys.stderr)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter(service) if settings.log_json else TextFormatter(service))
    root.addHandler(handler)
    root.setLevel(str(settings.log_level).upper())
    # httpx logs every request URL at INFO (with the token in it): redacted anyway, but noisy.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return handler
