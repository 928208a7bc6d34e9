"""Training options (inline keyboard), the time estimate, and queueing train/predict jobs.

The queueing functions are blocking (database + broker) and run in threads. Jobs are made from
their typed params (jobs/params.py: TrainParams, PredictParams), and read back through them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import t
from bot.services import DEFAULT_TRAIN_OPTIONS, Services, UserInfo, get_user, update_preferences
from core.i18n import Text
from jobqueue.estimates import Estimate, Rates, Wait, estimate_job, estimate_training, wait_ahead
from jobqueue.store import QueueLimitError, queue_position, submit_job
from jobs.params import JobParams, ParamsError, PredictParams, TrainParams
from segmodel.options import OptionsError
from storage.models import Dataset, Job, JobKind, JobState, TrainedModel, Upload

ARCHES = ("tiny", "r50", "x101")
ITERATIONS = (None, 50, 200, 1000, 3000)
RESCALES = (None, 1.0, 2.0, 3.0)


def cycle(values: tuple[Any, ...], current: Any) -> Any:
    try:
        return values[(values.index(current) + 1) % len(values)]
    except ValueError:
        return values[0]


def next_option(options: dict[str, Any], name: str) -> dict[str, Any]:
    options = {**DEFAULT_TRAIN_OPTIONS, **options}
    if name == "arch":
        options["arch"] = cycle(ARCHES, options["arch"])
    elif name == "iters":
        options["iterations"] = cycle(ITERATIONS, options["iterations"])
    elif name == "aug":
        options["augment"] = not options["augment"]
    elif name == "rescale":
        options["rescale"] = cycle(RESCALES, options["rescale"])
    return options


def training_estimate(
    session: Session, options: dict[str, Any], device: str, upload_ids: list[int] | None = None
) -> Estimate:
    """The estimate the options message shows: measured speed of this kind of worker and preset
    (jobqueue/estimates.py), the iteration count the trainer will actually run."""
    return estimate_training(session, {**DEFAULT_TRAIN_OPTIONS, **options}, device, upload_ids)


def estimate_text(lang: str, estimate: Estimate) -> str:
    if estimate.minutes is None:
        return t(lang, "estimate_unknown", iterations=estimate.iterations)
    return t(lang, "estimate", minutes=estimate.minutes, iterations=estimate.iterations)


def wait_text(lang: str, wait: Wait | None) -> str:
    if wait is None or wait.ahead == 0:
        return t(lang, "wait_next")
    if wait.seconds is None:
        return t(lang, "wait_ahead_unknown", ahead=wait.ahead)
    return t(lang, "wait_ahead", ahead=wait.ahead, minutes=max(1, round(wait.seconds / 60)))


def options_text(options: dict[str, Any], lang: str, estimate: Estimate) -> str:
    o = {**DEFAULT_TRAIN_OPTIONS, **options}
    return t(
        lang,
        "options_title",
        arch=o["arch"],
        iters=o["iterations"] or t(lang, "auto"),
        aug=t(lang, "on" if o["augment"] else "off"),
        rescale=f"x{o['rescale']:g}" if o["rescale"] else t(lang, "auto"),
        estimate=estimate_text(lang, estimate),
    )


def options_keyboard(options: dict[str, Any], lang: str) -> InlineKeyboardMarkup:
    o = {**DEFAULT_TRAIN_OPTIONS, **options}
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(f"preset: {o['arch']}", callback_data="opt:arch"),
                InlineKeyboardButton(
                    f"iterations: {o['iterations'] or t(lang, 'auto')}", callback_data="opt:iters"
                ),
            ],
            [
                InlineKeyboardButton(
                    f"aug: {t(lang, 'on' if o['augment'] else 'off')}", callback_data="opt:aug"
                ),
                InlineKeyboardButton(
                    "rescale: " + (f"x{o['rescale']:g}" if o["rescale"] else t(lang, "auto")),
                    callback_data="opt:rescale",
                ),
            ],
            [InlineKeyboardButton(t(lang, "btn_start"), callback_data="train:go")],
        ]
    )


def after_labels_keyboard(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t(lang, "btn_train"), callback_data="train:go"),
                InlineKeyboardButton(t(lang, "btn_more"), callback_data="train:more"),
                InlineKeyboardButton(t(lang, "btn_options"), callback_data="train:opts"),
            ]
        ]
    )


@dataclass
class Queued:
    job_id: int | None = None
    position: int | None = None
    estimate: Estimate | None = None  # a train job's
    wait: Wait | None = None  # what runs before it
    # "no_labels", "no_model", "already_queued"/"already_trained" (job_id: that job), else the
    # queue's user-facing limit (a Text, shown in the user's language)
    error: str | Text | None = None


ACTIVE = (JobState.QUEUED, JobState.RUNNING)


def _already(job: Job) -> Queued:
    return Queued(job.id, error="already_queued" if job.state in ACTIVE else "already_trained")


def _earlier_job(session: Session, user_id: int, correction_of: int | None) -> Job | None:
    """The train job that already holds this set: for a correction, the job made from it (not
    failed or cancelled); for the pending set, the user's active training."""
    jobs = select(Job).where(Job.user_id == user_id, Job.kind == JobKind.TRAIN.value).order_by(Job.id.desc())
    if correction_of is None:
        return session.scalar(jobs.where(Job.state.in_(ACTIVE)))
    done = (JobState.FAILED, JobState.CANCELLED)
    return next(
        (j for j in session.scalars(jobs.where(Job.state.not_in(done)).limit(200))
         if _correction_of(j) == correction_of),
        None,
    )


def _correction_of(job: Job) -> int | None:
    try:
        return TrainParams.from_job(job).correction_of
    except ParamsError:  # a row that cannot be read holds no set of ours
        return None


def _submit(
    services: Services,
    session: Session,
    user_id: int,
    params: JobParams,
    chat_id: int,
    dataset_id: int | None = None,
    model_id: int | None = None,
) -> Queued:
    user = get_user(session, user_id)
    try:
        job = submit_job(
            session,
            user,
            params,
            settings=services.settings,
            dataset_id=dataset_id,
            model_id=model_id,
            chat_id=chat_id,
        )
    except QueueLimitError as error:
        session.rollback()
        return Queued(error=error.text)
    session.flush()
    rates = Rates(session)
    return Queued(job.id, queue_position(session, job), estimate_job(session, job, rates),
                  wait_ahead(session, job, rates))


def queue_training(
    services: Services,
    user: UserInfo,
    chat_id: int,
    upload_ids: list[int] | None = None,
    options: dict[str, Any] | None = None,
    clear_pending: bool = True,
    correction_of: int | None = None,
) -> Queued:
    """Create the dataset from the pending uploads (or the given ones, made for the correction
    upload `correction_of`) and submit the train job; once: a set already queued gets that job."""

    def work(session: Session) -> Queued:
        current = get_user(session, user.id)
        prefs = dict(current.preferences or {})
        if correction_of is not None and (earlier := _earlier_job(session, user.id, correction_of)):
            return _already(earlier)
        ids = list(upload_ids if upload_ids is not None else prefs.get("pending_uploads") or [])
        uploads = list(session.scalars(select(Upload).where(Upload.id.in_(ids), Upload.user_id == user.id)))
        if not uploads:
            earlier = _earlier_job(session, user.id, None) if upload_ids is None else None
            return _already(earlier) if earlier is not None else Queued(error="no_labels")
        opts = {**DEFAULT_TRAIN_OPTIONS, **(prefs.get("train_options") or {}), **(options or {})}
        train_opts = {k: v for k, v in opts.items() if v is not None}
        train_opts["device"] = services.settings.device
        try:  # correction_of: how a second press finds this job
            params = TrainParams(upload_ids=tuple(u.id for u in uploads), options=train_opts,
                                 correction_of=correction_of)
        except OptionsError as error:  # saved choices no training can use: say which
            return Queued(error=error.text)
        dataset = Dataset(
            user_id=user.id,
            name=f"set {len(uploads)} file(s)",
            uploads=uploads,
            summary={"files": [u.original_name for u in uploads]},
        )
        session.add(dataset)
        session.flush()
        queued = _submit(services, session, user.id, params, chat_id, dataset.id)
        if queued.job_id is not None and clear_pending and upload_ids is None:
            update_preferences(session, user.id, pending_uploads=None)
        return queued

    return services.run_db(work)


def queue_recognition(
    services: Services,
    user: UserInfo,
    chat_id: int,
    upload_ids: Sequence[int],
    nm_per_px: float | None,
) -> Queued:
    """The predict job for these uploads; nm_per_px: the scale given with them (None: the user's
    /scale, if any; the job takes the file's own, then its scale bar's)."""
    return services.run_db(_queue_predict, services, user, chat_id, upload_ids, nm_per_px)


def _queue_predict(
    session: Session,
    services: Services,
    user: UserInfo,
    chat_id: int,
    upload_ids: Sequence[int],
    nm_per_px: float | None,
    scale_source: str | None = None,
    scale_bar: bool = True,
) -> Queued:
    """scale_source: where nm_per_px comes from (a confirmed bar reading); scale_bar False: the user
    said the image's scale bar reading is wrong."""
    current = get_user(session, user.id)
    model = session.get(TrainedModel, current.active_model_id) if current.active_model_id else None
    if model is None or model.user_id != user.id:
        return Queued(error="no_model")
    params = PredictParams(upload_ids=tuple(upload_ids), model_id=model.id, threshold=current.score_threshold,
                           nm_per_px=nm_per_px if nm_per_px is not None else current.nm_per_px,
                           scale_source=scale_source, scale_bar=scale_bar,
                           metal=current.preferences.get("metal"))
    return _submit(services, session, user.id, params, chat_id, model_id=model.id)


SCALE_ASK = "scale_ask"  # Upload.summary key: the unsure scale bar reading the user was asked about


@dataclass
class ScaleAnswer:
    queued: Queued
    name: str  # the image's
    nm_per_px: float | None  # the reading asked about


def queue_scale_answer(
    services: Services, user: UserInfo, chat_id: int, upload_id: int, use: bool
) -> ScaleAnswer | None:
    """Recognition of an image held for the user's answer on its scale bar reading, queued once:
    use -> the reading as the user's scale (job param nm_per_px), else no scale from the bar (sizes in
    px unless /scale is set). The answer and its job are recorded on the upload in the same
    transaction; a second answer gets that job (error "answered") and changes nothing.
    None: this user was asked no such question."""

    def work(session: Session) -> ScaleAnswer | None:
        upload = session.get(Upload, upload_id)
        if upload is None or upload.user_id != user.id:
            return None
        ask = (upload.summary or {}).get(SCALE_ASK)
        if not isinstance(ask, dict):
            return None
        reading = float(ask["nm_per_px"])
        if ask.get("job_id"):
            return ScaleAnswer(Queued(int(ask["job_id"]), error="answered"), upload.original_name, reading)
        if use:
            queued = _queue_predict(session, services, user, chat_id, [upload.id], reading,
                                    scale_source=ask.get("source"))
        else:
            queued = _queue_predict(session, services, user, chat_id, [upload.id], None, scale_bar=False)
        if queued.job_id is not None:
            answered = {**ask, "answer": "use" if use else "no", "job_id": queued.job_id}
            upload.summary = {**(upload.summary or {}), SCALE_ASK: answered}
        return ScaleAnswer(queued, upload.original_name, reading)

    return services.run_db(work)


def set_progress_message(services: Services, job_id: int, chat_id: int, message_id: int) -> None:
    def work(session: Session) -> None:
        job = session.get(Job, job_id)
        if job is not None:
            job.chat_id = chat_id
            job.progress_message_id = message_id

    services.run_db(work)
