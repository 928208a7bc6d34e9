"""Who is calling: Telegram's Mini App `initData`, checked as Telegram documents it.

The key is HMAC-SHA256(key="WebAppData", msg=bot token); the data-check-string is every received
field except `hash`, as sorted `key=value` lines joined by "\\n"; `hash` is the hex HMAC-SHA256 of
it under that key. `auth_date` must be recent. The page sends initData in a header
(`Authorization: tma <initData>`), never in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from core.settings import Settings

MAX_INIT_DATA = 8192  # Telegram's initData is well under 1 KB
CLOCK_SKEW_S = 60  # an auth_date this far in the future is still taken (clocks differ)


class AuthError(Exception):
    """initData missing, malformed, forged or expired: HTTP 401 with this message."""


@dataclass(frozen=True)
class WebAppUser:
    telegram_id: int
    username: str | None
    language_code: str | None
    auth_date: int


def secret_key(token: str) -> bytes:
    return hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()


def sign(fields: dict[str, str], token: str) -> str:
    """The `hash` Telegram would send with these fields (tests and the docs' example use it)."""
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "hash")
    return hmac.new(secret_key(token), check.encode(), hashlib.sha256).hexdigest()


def check_init_data(init_data: str, token: str, max_age_s: float, now: float | None = None) -> WebAppUser:
    """The user of a genuine, recent initData; AuthError otherwise."""
    if not init_data:
        raise AuthError("Open this page from the bot's Review button (no Telegram login data).")
    if len(init_data) > MAX_INIT_DATA:
        raise AuthError("The Telegram login data is too long.")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise AuthError("The Telegram login data is malformed.") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise AuthError("The Telegram login data repeats a field.")
    received = fields.get("hash", "")
    if (
        not received
        or not received.isascii()
        or not hmac.compare_digest(sign(fields, token), received.lower())
    ):
        raise AuthError("The Telegram login data is not signed by this bot.")
    try:
        auth_date = int(fields.get("auth_date", ""))
        user = json.loads(fields.get("user", ""))
        telegram_id = int(user["id"])
    except (ValueError, TypeError, KeyError):
        raise AuthError("The Telegram login data has no user or date.") from None
    now = time.time() if now is None else now
    if auth_date > now + CLOCK_SKEW_S:
        raise AuthError("The Telegram login data is dated in the future.")
    if now - auth_date > max_age_s:
        raise AuthError(
            "The Telegram login data has expired: close this page and open it again from the chat."
        )
    username = user.get("username") if isinstance(user.get("username"), str) else None
    lang = user.get("language_code") if isinstance(user.get("language_code"), str) else None
    return WebAppUser(telegram_id, username, lang, auth_date)


def from_header(value: str | None) -> str:
    """initData from `Authorization: tma <initData>`."""
    scheme, _, rest = (value or "").strip().partition(" ")
    if scheme.lower() != "tma" or not rest.strip():
        raise AuthError("Open this page from the bot's Review button (no Telegram login data).")
    return rest.strip()


def allowed(settings: Settings, user: WebAppUser) -> bool:
    """The bot's access rule (SEGBOT_ACCESS_MODE) applies to the page too."""
    if settings.access_mode == "open":
        return True
    names = {str(user.telegram_id)} | ({user.username.lower()} if user.username else set())
    return bool(names & (settings.allowed_ids | settings.admin_ids))
