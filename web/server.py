"""Running the web app: in the foreground (`segbot web`) or on its own event loop in a thread
beside the bot (`segbot run`, the tests).

Why a thread and not PTB's loop: the bot and the page share nothing in memory (a saved correction
reaches the chat through the outbox in the database), so a separate loop costs nothing and keeps
each from stalling the other; PTB's run_polling owns its loop's whole life (signals, shutdown), and
the server's start and stop stay the same in `segbot run` and in tests."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from core.settings import Settings
from web.app import build_web_app


class WebServer:
    """start() binds (port 0 = any free port, see .port) and serves until stop()."""

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None) -> None:
        self.settings = settings
        self.host = host or settings.web_host
        self.port = settings.web_port if port is None else port
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="segbot-web", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - surfaced to the caller in start()/stop()
            self.error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(build_web_app(self.settings), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """`segbot web`: serve in the foreground until SIGINT/SIGTERM."""
    web.run_app(
        build_web_app(settings),
        host=host or settings.web_host,
        port=settings.web_port if port is None else port,
        access_log=None,
        print=None,
    )
