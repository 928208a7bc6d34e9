"""Telegram initData as the Mini App's server checks it, against a hash computed here by hand from
Telegram's documented recipe; the download links; the Mini App settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest

from core.settings import SettingsError, load_settings
from web import links
from web.auth import AuthError, WebAppUser, allowed, check_init_data, from_header

TOKEN = "123456:TEST-token_secret"
DAY = 86400


def telegram_hash(fields: dict[str, str], token: str) -> str:
    """Telegram's recipe, written out independently of web.auth."""
    key = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    return hmac.new(key, check.encode(), hashlib.sha256).hexdigest()


def make(token: str = TOKEN, auth_date: float | None = None, **extra: str) -> str:
    fields = {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps({"id": 4242, "first_name": "Алиса", "username": "alice", "language_code": "ru"}),
        "auth_date": str(int(time.time() if auth_date is None else auth_date)),
        **extra,
    }
    return urlencode({**fields, "hash": telegram_hash(fields, token)})


def test_genuine_init_data_gives_the_user() -> None:
    user = check_init_data(make(signature="abc", chat_type="private"), TOKEN, DAY)
    assert (user.telegram_id, user.username, user.language_code) == (4242, "alice", "ru")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "no Telegram login data"),
        (make(token="999:OTHER-bot"), "not signed by this bot"),  # another bot's initData
        (make().replace("4242", "4243"), "not signed by this bot"),  # someone else's id spliced in
        (make().rsplit("&hash=", 1)[0], "not signed by this bot"),  # no hash at all
        (make() + "&hash=00", "repeats a field"),
        (make(auth_date=time.time() - DAY - 60), "expired"),
        (make(auth_date=time.time() + 3600), "future"),
        ("%%%&&==", "malformed"),
        ("x" * 9000, "too long"),
        (make().replace("hash=", "hash=%C3%A9"), "not signed by this bot"),  # non-ASCII hash
    ],
)
def test_bad_init_data_is_refused_with_a_reason(data: str, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        check_init_data(data, TOKEN, DAY)


def test_a_signed_init_data_without_user_is_refused() -> None:
    fields = {"auth_date": str(int(time.time())), "query_id": "q"}
    with pytest.raises(AuthError, match="no user"):
        check_init_data(urlencode({**fields, "hash": telegram_hash(fields, TOKEN)}), TOKEN, DAY)


def test_the_age_limit_is_the_configured_one() -> None:
    data = make(auth_date=time.time() - 120)
    assert check_init_data(data, TOKEN, 300).telegram_id == 4242
    with pytest.raises(AuthError, match="expired"):
        check_init_data(data, TOKEN, 60)


def test_header_scheme_is_tma() -> None:
    data = make()
    assert from_header(f"tma {data}") == data
    for bad in (None, "", "Bearer x", "tma ", data):
        with pytest.raises(AuthError):
            from_header(bad)
    assert dict(parse_qsl(from_header("TMA " + data)))["hash"]


def test_allowlist_applies_to_the_page(settings) -> None:
    alice = WebAppUser(4242, "Alice", "en", 0)
    assert allowed(settings, alice)  # open by default
    closed = load_settings(data_dir=settings.data_dir, access_mode="allowlist", allowed_users="@alice")
    assert allowed(closed, alice)
    assert not allowed(closed, WebAppUser(7, "mallory", "en", 0))


def test_download_links_are_bound_to_user_result_role_and_time() -> None:
    url = links.make_link(TOKEN, 5, 9, "csv", now=1000)
    _, _, uid, rid, role, expires, sig = url.split("/")
    assert (uid, rid, role) == ("5", "9", "csv") and TOKEN not in url and TOKEN.split(":")[1] not in url
    assert links.check_link(TOKEN, 5, 9, "csv", int(expires), sig, now=1000)
    assert not links.check_link(TOKEN, 5, 9, "csv", int(expires), sig, now=1000 + links.LINK_TTL_S + 1)
    assert not links.check_link(TOKEN, 6, 9, "csv", int(expires), sig, now=1000)
    assert not links.check_link(TOKEN, 5, 8, "csv", int(expires), sig, now=1000)
    assert not links.check_link(TOKEN, 5, 9, "labelme", int(expires), sig, now=1000)
    assert not links.check_link(TOKEN, 5, 9, "summary", int(expires), sig, now=1000)
    assert not links.check_link("999:OTHER", 5, 9, "csv", int(expires), sig, now=1000)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://segbot.example.org/", "https://segbot.example.org"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("", None),
        ("http://segbot.example.org", SettingsError),
        ("https://segbot.example.org/?x=1", SettingsError),
        ("ftp://segbot.example.org", SettingsError),
    ],
)
def test_webapp_url_setting(settings, url: str, ok) -> None:
    if ok is SettingsError:
        with pytest.raises(SettingsError, match="SEGBOT_WEBAPP_URL"):
            load_settings(data_dir=settings.data_dir, webapp_url=url)
    else:
        assert load_settings(data_dir=settings.data_dir, webapp_url=url).webapp_url == ok
