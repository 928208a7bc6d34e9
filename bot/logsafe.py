"""Keep the bot token (and file URLs, which contain it) out of every log record.

httpx logs each request URL (https://api.telegram.org/bot<token>/getUpdates); handler filters do not
see records of loggers created later, so the redaction happens where records are made.
"""

from __future__ import annotations

import logging
import re
import uuid

from core.logs import REDACTED
from core.logs import redact as redact_urls_and_passwords

_TOKEN_RE = re.compile(r"\d{3,}(?::|%3A|%3a)[A-Za-z0-9_-]{10,}")  # httpx logs ':' as %3A in file URLs
_secrets: set[str] = set()
_installed = False


def redact(text: str) -> str:
    """The configured token (also %3A-encoded) and token-shaped strings, then core.logs' rules;
    one marker for both, so a log reads the same whichever layer redacted it."""
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    text = _TOKEN_RE.sub(REDACTED, text)
    return redact_urls_and_passwords(text)


def install_redaction(*secrets: str) -> None:
    """Redact these secrets (and anything shaped like a bot token) in every log record from now on."""
    global _installed
    _secrets.update(s for s in secrets if s)
    _secrets.update(s.replace(":", "%3A") for s in secrets if s)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is not ours to fix here
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def error_id() -> str:
    """A short id a user can quote and an admin can grep for."""
    return uuid.uuid4().hex[:8]


def setup_logging(settings) -> None:
    """core.logs' setup (text or JSON, levels, the redaction filter) for the bot process."""
    from core.logs import setup_logging as ops_setup

    ops_setup(settings, "bot")
    # httpx logs every request at INFO: too chatty for polling, and URLs carry the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
