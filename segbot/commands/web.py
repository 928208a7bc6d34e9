"""`segbot web`: the Mini App's page and API on their own (the bot runs elsewhere)."""

from __future__ import annotations

import logging

import click

from segbot.errors import user_errors

log = logging.getLogger("web")


@click.command("web")
@click.option("--host", default=None, help="Bind address (default: SEGBOT_WEB_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port (default: SEGBOT_WEB_PORT).")
@user_errors
def web(host: str | None, port: int | None) -> None:
    """Serve the Review page (Telegram Mini App) behind an HTTPS reverse proxy (docs/webapp.md).

    It needs the bot token (to check Telegram's login data) and the bot's database and file store;
    it never talks to Telegram: the chat hears about saved corrections through the outbox."""
    from bot.logsafe import setup_logging
    from core.settings import get_settings
    from web.server import serve_forever

    settings = get_settings()
    settings.token  # noqa: B018 - fail early with the settings message when the token is missing
    setup_logging(settings)
    if not settings.webapp_url:
        log.warning("SEGBOT_WEBAPP_URL is not set: the bot shows no Review button for this server")
    log.info("web app on %s:%s", host or settings.web_host, settings.web_port if port is None else port)
    serve_forever(settings, host, port)
