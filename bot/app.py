"""The one Application factory (used by `segbot run` and by the tests) and an async runner."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from telegram import BotCommand, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.delivery import Deliverer
from bot.handlers import (
    account,
    admin,
    commands,
    compare,
    label,
    models,
    results,
    scale,
    status,
    training,
    uploads,
)
from bot.handlers.gate import gate, handled, on_error
from bot.lanes import LaneLimiter
from bot.logsafe import install_redaction
from bot.services import Services
from core.i18n import LANGS, N_, SOURCE_LANG, render
from core.settings import Settings
from storage.pending import purge_expired

log = logging.getLogger(__name__)
PURGE_EVERY_S = 600.0  # expired pending states (a JSON whose image never came) are deleted this often

# Every route from an update to its handler is here.
COMMANDS = {
    "start": commands.cmd_start,
    "help": commands.cmd_help,
    "example": commands.cmd_example,
    "lang": account.cmd_lang,
    "train": training.cmd_train,
    "status": status.cmd_status,
    "cancel": status.cmd_cancel,
    "models": models.cmd_models,
    "scale": account.cmd_scale,
    "threshold": account.cmd_threshold,
    "stats": results.cmd_stats,
    "compare": compare.cmd_compare,
    "metal": compare.cmd_metal,
    "label": label.cmd_label,
    "export": results.cmd_export,
    "forget_me": account.cmd_forget,
    "admin": admin.cmd_admin,
}
# Callback data formats live on in users' old messages: change a pattern only together with a
# handler that still understands the old data. What matches none gets "this button has expired".
BUTTONS = [
    (account.LANG_PATTERN, account.on_lang_button),  # lang:en|ru
    (training.TRAIN_PATTERN, training.on_train_button),  # train:go|more|opts
    (training.OPTION_PATTERN, training.on_option_button),  # opt:<name>
    (models.MODEL_PATTERN, models.on_model_button),  # m:use|ren|del:<model id>
    (account.FORGET_PATTERN, account.on_forget_button),  # forget:yes|no
    (training.CORRECTION_PATTERN, training.on_correction_button),  # corr:<upload id>
    (scale.SCALE_PATTERN, scale.on_scale_button),  # sb:use|no:<upload id>
    (compare.COMPARE_PATTERN, compare.on_compare_button),  # cmp:<job A>[:<job B>]
]
MENU = [  # the command menu, in each language (Telegram shows the one for the user's app language)
    ("start", N_("what segbot does")),
    ("help", N_("how to label, commands")),
    ("example", N_("a labelled sample")),
    ("train", N_("train on your labels")),
    ("status", N_("your jobs")),
    ("cancel", N_("stop a job")),
    ("models", N_("your models")),
    ("scale", N_("nm per pixel")),
    ("threshold", N_("score threshold")),
    ("stats", N_("pooled statistics")),
    ("compare", N_("two result sets compared")),
    ("metal", N_("metal, for dispersion")),
    ("label", N_("label an image on your phone")),
    ("export", N_("all your files")),
    ("lang", N_("English/Русский")),
    ("forget_me", N_("delete everything of yours")),
]


def menu(lang: str) -> list[BotCommand]:
    return [BotCommand(command, render(lang, about)) for command, about in MENU]


def build_application(
    settings: Settings,
    *,
    tick_interval: float = 1.0,
    progress_interval: float = 3.0,
    spam_max: int = 20,
    spam_window_s: float = 10.0,
    limiter: LaneLimiter | None = None,
) -> Application:
    """The bot: handlers, the outbox/progress job every tick_interval s, edits >= progress_interval s
    apart, at most spam_max updates per user in spam_window_s (the rest is dropped after one warning)."""
    token = settings.token
    install_redaction(token)
    services = Services.create(settings)
    services.throttle.min_interval = progress_interval
    services.spam_max, services.spam_window_s = spam_max, spam_window_s
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_api_base_file_url)
        .rate_limiter(limiter or LaneLimiter())  # replies first, deliveries with what is left (bot/lanes.py)
        .concurrent_updates(
            True
        )  # one slow download must not hold up other users (per-user locks keep order)
        .post_init(on_startup)
        .build()
    )
    app.bot_data["services"] = services
    deliverer = Deliverer(services)
    app.bot_data["deliverer"] = deliverer

    add_handlers(app)
    app.job_queue.run_repeating(
        deliverer.tick,
        interval=tick_interval,
        first=tick_interval / 2,
        name="outbox",
        job_kwargs={"max_instances": 1, "coalesce": True},
    )
    app.job_queue.run_repeating(purge_states, interval=PURGE_EVERY_S, first=PURGE_EVERY_S, name="purge")
    return app


def add_handlers(app: Application) -> None:
    """The gate first (it may stop an update), then the first matching handler, then the latency."""
    app.add_handler(TypeHandler(Update, gate), group=-1)
    for name, callback in COMMANDS.items():
        app.add_handler(CommandHandler(name, callback))
    for pattern, callback in BUTTONS:
        app.add_handler(CallbackQueryHandler(callback, pattern=pattern))
    app.add_handler(CallbackQueryHandler(commands.on_stale_button))
    app.add_handler(MessageHandler(filters.Document.ALL | filters.PHOTO, uploads.on_file))
    app.add_handler(MessageHandler(filters.COMMAND, commands.cmd_unknown))
    app.add_handler(MessageHandler(filters.TEXT, models.on_text))  # a pending rename, else a hint
    app.add_handler(MessageHandler(filters.ALL, commands.on_other))
    app.add_handler(TypeHandler(Update, handled), group=100)
    app.add_error_handler(on_error)


async def on_startup(app: Application) -> None:
    use_big_executor()
    try:
        await app.bot.set_my_commands(menu(SOURCE_LANG))  # the default, for every other language
        for lang in LANGS:
            if lang != SOURCE_LANG:
                await app.bot.set_my_commands(menu(lang), language_code=lang)
    except Exception as error:  # noqa: BLE001 - the menu is a convenience, never a reason not to start
        log.warning("could not set the command menu: %s", error)
    services: Services = app.bot_data["services"]
    purged = await services.db(purge_expired)
    resumed = await uploads.resume_albums(app)  # albums whose parts came before a restart
    log.info("startup: %d expired states deleted, %d albums resumed", purged, resumed)


async def purge_states(context: ContextTypes.DEFAULT_TYPE) -> None:
    await context.bot_data["services"].db(purge_expired)


def use_big_executor() -> None:
    """asyncio.to_thread's default pool has cpu+4 threads; database calls and validations of many
    users at once would queue behind each other."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="bot")
    )


async def run_until(
    app: Application, stop: threading.Event | asyncio.Event, poll_timeout: float = 10.0
) -> None:
    """Poll until `stop` is set (the tests' and the benchmark's way; `segbot run` uses run_polling)."""
    async with app:
        await on_startup(app)
        await app.start()
        await app.updater.start_polling(
            timeout=int(poll_timeout), poll_interval=0.0, allowed_updates=Update.ALL_TYPES
        )
        try:
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await app.updater.stop()
            await app.stop()


class BotThread:
    """The real Application polling in a background thread with its own event loop."""

    def __init__(self, settings: Settings, poll_timeout: float = 1.0, **build_kwargs: object) -> None:
        self.settings = settings
        self.poll_timeout = poll_timeout
        self.build_kwargs = build_kwargs
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.app: Application | None = None
        self._thread = threading.Thread(target=self._main, name="segbot-bot", daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        try:
            self.app = build_application(self.settings, **self.build_kwargs)  # type: ignore[arg-type]
            self._ready.set()
            asyncio.run(run_until(self.app, self.stop_event, self.poll_timeout))
        except BaseException as error:  # noqa: BLE001 - surfaced to the caller in stop()
            self.error = error
            self._ready.set()

    def start(self) -> BotThread:
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> BotThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
