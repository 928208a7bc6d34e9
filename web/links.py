"""Short-lived download links for a result's LabelMe JSON and CSV.

A download (an <a href> or Telegram's downloadFile) cannot carry the Authorization header, so the
API hands out links signed for one user, result and file that expire after LINK_TTL_S; the key is
derived from the bot token (never the token itself, which is in no URL)."""

from __future__ import annotations

import hashlib
import hmac
import time

LINK_TTL_S = 600
ROLES = ("labelme", "csv")


def _key(token: str) -> bytes:
    return hmac.new(b"segbot-download-link", token.encode(), hashlib.sha256).digest()


def _sig(token: str, user_id: int, result_id: int, role: str, expires: int) -> str:
    message = f"{user_id}/{result_id}/{role}/{expires}".encode()
    return hmac.new(_key(token), message, hashlib.sha256).hexdigest()[:40]


def make_link(token: str, user_id: int, result_id: int, role: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + LINK_TTL_S)
    return f"/dl/{user_id}/{result_id}/{role}/{expires}/{_sig(token, user_id, result_id, role, expires)}"


def check_link(
    token: str, user_id: int, result_id: int, role: str, expires: int, sig: str, now: float | None = None
) -> bool:
    if role not in ROLES or (time.time() if now is None else now) > expires or not sig.isascii():
        return False
    return hmac.compare_digest(_sig(token, user_id, result_id, role, expires), sig)
