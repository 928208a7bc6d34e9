"""`segbot run`: check the database, start a worker beside the bot on the embedded queue, poll."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from segbot.errors import user_errors

if TYPE_CHECKING:
    import subprocess

    from telegram.ext import Application

    from core.settings import Settings
    from web.server import WebServer

log = logging.getLogger("bot")


def _check_database(settings, migrate: bool) -> None:
    """Refuse a database behind the code, except the SQLite file segbot keeps in its own data dir:
    nobody else uses that one, so it is brought up to date here (a fresh install needs no step)."""
    from storage.migrate import current_revision, head_revision, upgrade

    url = settings.database_url
    current = None
    try:
        current = current_revision(url)
    except Exception as error:  # noqa: BLE001 - any connection problem is reported the same way
        raise click.ClickException(
            f"cannot open the database ({type(error).__name__}); check DATABASE_URL"
        ) from None
    head = head_revision(url)
    if current != head:
        embedded = settings.database_url_raw is None  # the default SQLite file under SEGBOT_DATA_DIR
        if not migrate and not embedded:
            raise click.ClickException(
                f"the database is at revision {current or 'none'}, not {head}: "
                "run `segbot migrate` first (or `segbot run --migrate`)"
            )
        upgrade(url)
        if embedded:
            log.info("embedded database %s was at revision %s: migrated to %s", url.removeprefix("sqlite:///"),
                     current or "none", head)


@click.command()
@click.option("--migrate", "do_migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.option(
    "--worker/--no-worker",
    default=True,
    show_default=True,
    help="Start a worker process beside the bot when the queue is embedded.",
)
@click.option(
    "--web/--no-web",
    default=True,
    show_default=True,
    help="Serve the Mini App (Review page) in this process when SEGBOT_WEBAPP_URL is set.",
)
@click.option("--webhook-url", default=None, help="Use a webhook at this public URL instead of polling.")
@click.option("--listen", default="127.0.0.1", show_default=True, help="Webhook listen address.")
@click.option("--port", default=8443, show_default=True, type=int, help="Webhook port.")
@user_errors
def run(do_migrate: bool, worker: bool, web: bool, webhook_url: str | None, listen: str, port: int) -> None:
    """Run the Telegram bot (polling by default)."""
    from bot.app import build_application
    from bot.logsafe import setup_logging
    from core.settings import get_settings

    if webhook_url:
        _require_webhook_extra()
    settings = get_settings()
    settings.token  # noqa: B018 - fail early with the settings message when the token is missing
    setup_logging(settings)
    settings.ensure_dirs()
    _check_database(settings, do_migrate)
    process = _start_worker(settings) if worker and settings.broker_is_embedded else None
    if settings.metrics_port:
        _start_metrics(settings.metrics_port)
    app = build_application(settings)
    server = _start_web(settings) if web and settings.webapp_url else None
    try:
        _serve(app, webhook_url, listen, port)
    finally:
        _stop(server, process)


def _require_webhook_extra() -> None:
    try:
        import tornado  # noqa: F401 - PTB's webhook server
    except ImportError:
        raise click.ClickException(
            "webhook mode needs PTB's webhook extra: pip install 'python-telegram-bot[webhooks]==22.8' "
            "(or run without --webhook-url to poll)"
        ) from None


def _start_worker(settings: Settings) -> subprocess.Popen[bytes] | None:
    """A worker process beside the bot (the embedded queue), or None without the worker module."""
    try:
        from jobqueue.worker import start_worker_process
    except ImportError:
        log.warning("no worker module (jobqueue.worker): jobs stay queued until a worker runs")
        return None
    process = start_worker_process(settings)
    log.info("worker process %s started (embedded queue)", process.pid)
    return process


def _start_metrics(port: int) -> None:
    try:
        from core.metrics import start_metrics_server
    except ImportError:
        return
    start_metrics_server(port)


def _start_web(settings: Settings) -> WebServer:
    """The Mini App's server, started."""
    from web.server import WebServer  # its own loop in a thread: web/server.py says why

    server = WebServer(settings).start()
    log.info("Mini App served on %s for %s", server.url, settings.webapp_url)
    return server


def _serve(app: Application, webhook_url: str | None, listen: str, port: int) -> None:
    """Take updates until stopped: from a webhook at `webhook_url`, else by polling."""
    from telegram import Update

    if webhook_url:
        import secrets

        secret = secrets.token_hex(16)  # Telegram echoes it; set anew at each start
        app.run_webhook(
            listen=listen,
            port=port,
            url_path="telegram",
            webhook_url=webhook_url.rstrip("/") + "/telegram",
            secret_token=secret,
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES)


def _stop(server: WebServer | None, process: subprocess.Popen[bytes] | None) -> None:
    """Stop the Mini App's server and the worker (killed when it has not ended within 30 s)."""
    if server is not None:
        server.stop()
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except Exception:  # noqa: BLE001
            process.kill()
