"""The loop that runs claimed jobs: claim in fair order, parse the job's params with its kind's
class, build the body's JobContext, keep the heartbeat, and record the outcome (or the failure) in
the job's row with its notice. Celery's task only calls `drain`; the bodies themselves are in jobs/."""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import InputError
from core.i18n import N_, Text, dump_text
from core.settings import Settings
from jobqueue import store as jobstore
from jobs.context import Body, JobCancelled, JobContext, JobError, Outcome
from jobs.detectors import DetectorCache
from jobs.params import JobParams, P
from jobs.registry import BODIES, JobType
from segmodel.options import OptionsError
from storage.files import StoreFull
from storage.models import JobKind, JobState
from storage.notices import JobCancelledNotice, JobFailedNotice

log = logging.getLogger(__name__)
T = TypeVar("T")

# The user models this worker process keeps loaded (one at a time). Made at import, so each prefork
# pool process has its own; tests hand drain/run_claim a cache of fakes instead.
PROCESS_DETECTORS = DetectorCache()


def db_unreachable(error: BaseException) -> bool:
    """The database went away (restart, network): worth retrying, never the job's fault."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(error, OperationalError) or (isinstance(error, DBAPIError)
                                                   and bool(error.connection_invalidated))


def with_db_retry(settings: Settings, what: str, call: Callable[[], T]) -> T:
    """`call()`, retried with backoff for up to settings.db_retry_s while the database is
    unreachable (the pool's pre-ping then hands out fresh connections); other errors pass."""
    deadline = time.monotonic() + settings.db_retry_s
    delay = 0.25
    while True:
        try:
            return call()
        except Exception as error:
            if not db_unreachable(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unreachable (%s); retrying in %.1f s", what, type(error).__name__,
                        delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def make_context(settings: Settings, claim: jobstore.Claim, params: P,
                 detectors: DetectorCache) -> JobContext[P]:
    """The body's context: progress and cancel go through the queue's claim checks. A database
    outage while the body runs is only logged: progress waits, the body goes on."""
    url = settings.database_url

    def write_progress(fraction: float, stage: str, eta_s: float | None, loss: float | None) -> bool:
        try:
            return jobstore.set_progress(url, claim, fraction, stage, eta_s, loss)
        except Exception as error:
            if not db_unreachable(error):
                raise
            log.warning("job %s: progress not written, database unreachable", claim.job_id)
            return True

    def read_stop() -> bool:
        try:
            return jobstore.should_stop(url, claim)
        except Exception as error:
            if not db_unreachable(error):
                raise
            return False  # we cannot know; the finishing compare-and-set decides

    return JobContext(settings, claim, params, write_progress=write_progress, read_stop=read_stop,
                      detectors=detectors)


# Running


class _Heartbeat(threading.Thread):
    """Keeps heartbeat_at fresh while a body runs, so the sweeper knows the worker is alive."""

    def __init__(self, ctx: JobContext[Any], claim: jobstore.Claim) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{ctx.job_id}")
        self.ctx = ctx
        self.claim = claim
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.ctx.settings.heartbeat_s):
            try:
                if not jobstore.heartbeat(self.ctx.url, self.claim):
                    self.ctx.lost = True
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the job
                log.warning("job %s: heartbeat failed", self.ctx.job_id, exc_info=True)


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def out_of_memory_advice(kind: str) -> Text:
    if kind == JobKind.PREDICT:
        return N_("Recognition ran out of memory. Try a smaller tile size, fewer images per job, or crop "
                  "very large images; a model trained with the smaller preset (tiny) also needs less.")
    if kind == JobKind.TRAIN:
        return N_("Training ran out of memory. Try the smaller preset (tiny), fewer or smaller labelled "
                  "crops, or a smaller crop size; or ask the administrator for a machine with more memory.")
    return N_("The job ran out of memory. Try a smaller preset, fewer objects or images, or a smaller tile "
              "size.")


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def _fail(settings: Settings, claim: jobstore.Claim, reason: Text | str) -> None:
    """The job failed: its row keeps the English (for the operator), its notice the message itself
    (rendered in the user's language by the bot)."""
    notice = JobFailedNotice(job_id=claim.job_id, kind=claim.kind, reason=dump_text(reason))
    try:
        with_db_retry(settings, f"job {claim.job_id}: recording the failure", lambda: jobstore.finish_job(
            settings.database_url, claim, JobState.FAILED, error=str(reason), notice=notice))
    except Exception as error:
        if not db_unreachable(error):
            raise
        log.error("job %s: could not record its failure, the database stayed unreachable; the sweeper "
                  "retries the job", claim.job_id)


def run_claim(settings: Settings, claim: jobstore.Claim, detectors: DetectorCache | None = None) -> str:
    """Run one claimed job to its end state; never raises for a job's own failure. `detectors`: the
    models it may load (default: this process's cache)."""
    started = time.monotonic()
    try:
        job_type, params = job_type_of(claim)
    except JobError as error:  # no body for its kind here, or a row its kind's class cannot read
        log.warning("job %s (%s) cannot start: %s", claim.job_id, claim.kind, error)
        _fail(settings, claim, error.text)
        outcome = JobState.FAILED.value
    else:
        ctx = make_context(settings, claim, params, PROCESS_DETECTORS if detectors is None else detectors)
        beat = _Heartbeat(ctx, claim)
        beat.start()
        try:
            outcome = _run(ctx, claim, job_type.body)
        finally:
            beat.done.set()
            beat.join(timeout=5)
        if outcome == "lost":  # taken away (its heartbeat went stale) or the database stayed away
            log.warning("job %s: not this worker's any more; nothing it wrote was kept", claim.job_id)
    _observe(settings, claim.kind, outcome, time.monotonic() - started)
    return outcome


def job_type_of(claim: jobstore.Claim) -> tuple[JobType[Any], JobParams]:
    """What runs this claim, and its params parsed ONCE, before the body starts (JobError: why not)."""
    job_type = BODIES.get(claim.kind)
    if job_type is None:
        raise JobError(N_("This worker cannot run jobs of kind '{kind}'. Please tell the administrator.",
                          kind=claim.kind))
    return job_type, job_type.params.from_row(claim.kind, claim.params)


def _observe(settings: Settings, kind: str, outcome: str, seconds: float) -> None:
    """Prometheus counters (core/metrics.py); metrics never break a job."""
    try:
        from core import metrics  # late: the worker sets PROMETHEUS_MULTIPROC_DIR before the first import

        if outcome != "lost":
            metrics.observe_job(kind, outcome, seconds)
        metrics.update_gpu_memory(settings.device)
    except Exception:  # noqa: BLE001
        log.debug("metrics not recorded", exc_info=True)


def _run(ctx: JobContext[P], claim: jobstore.Claim, body: Body[P]) -> str:
    log.info("job %s (%s) started, attempt %s", claim.job_id, claim.kind, claim.attempts)
    try:
        outcome = body(ctx)
        if ctx.recheck_now():  # cancelled while finishing: the user asked for nothing to be kept
            if outcome.discard:
                outcome.discard()
            raise JobCancelled()
    except JobCancelled:
        notice = JobCancelledNotice(job_id=claim.job_id, kind=claim.kind)
        try:
            cancelled = with_db_retry(ctx.settings, f"job {claim.job_id}: recording the cancel",
                                      lambda: jobstore.finish_job(ctx.url, claim, JobState.CANCELLED,
                                                                  notice=notice))
        except Exception as error:
            if not db_unreachable(error):
                raise
            log.error("job %s: cancel not recorded, the database stayed unreachable", claim.job_id)
            return "lost"
        if cancelled:
            log.info("job %s cancelled", claim.job_id)
            return JobState.CANCELLED.value
        return "lost"
    except Exception as error:  # MemoryError is an Exception too; the worker goes on either way
        if db_unreachable(error):  # not the job's fault: left running, the sweeper requeues it
            log.error("job %s: the database became unreachable while it ran; the sweeper retries it",
                      claim.job_id)
            return "lost"
        out_of_memory = is_out_of_memory(error)
        reason: Text | str
        if out_of_memory:
            log.warning("job %s ran out of memory: %s", claim.job_id, error)
            reason = out_of_memory_advice(claim.kind)
        elif isinstance(error, StoreFull):
            _disk_full(claim, error)
            reason = error.text
        elif isinstance(error, JobError | InputError | OptionsError):  # written for the user
            reason = error.text
        else:
            log.exception("job %s failed", claim.job_id)
            _count_error()
            reason = N_("Job #{job} failed because of an internal error; the administrator can find the "
                        "details in the worker log.", job=claim.job_id)
    else:
        return _record(ctx, claim, outcome)
    if out_of_memory:  # the exception and its frames (big arrays) are gone once out of `except`
        _free_memory()
    _fail(ctx.settings, claim, reason)
    return JobState.FAILED.value


def _disk_full(claim: jobstore.Claim, error: StoreFull) -> None:
    """The administrator's side of "the administrator has been told": an ERROR line (alerting
    watches these) and the error counter, which the dashboard's error-rate alert follows."""
    log.error("job %s failed: the file store is full (%s); free space or run `segbot clean`",
              claim.job_id, error.detail or error)
    _count_error()


def _count_error() -> None:
    try:
        from core.metrics import ERRORS_TOTAL

        ERRORS_TOTAL.labels(service="worker").inc()
    except Exception:  # noqa: BLE001
        pass


def _record(ctx: JobContext[Any], claim: jobstore.Claim, outcome: Outcome) -> str:
    try:
        recorded = with_db_retry(ctx.settings, f"job {claim.job_id}: recording the results",
                                 lambda: jobstore.finish_job(ctx.url, claim, JobState.SUCCEEDED,
                                                             result=outcome.result, notice=outcome.notice,
                                                             hook=outcome.record))
    except BaseException as error:
        if outcome.discard:
            outcome.discard()
        if db_unreachable(error):
            log.error("job %s: results not recorded, the database stayed unreachable; the sweeper "
                      "retries the job", claim.job_id)
            return "lost"
        if isinstance(error, StoreFull):
            _disk_full(claim, error)
            _fail(ctx.settings, claim, str(error))
            return JobState.FAILED.value
        log.exception("job %s: could not record its results", claim.job_id)
        _fail(ctx.settings, claim,
              f"Job #{claim.job_id} finished but its results could not be saved; please send it again.")
        return JobState.FAILED.value
    if not recorded:  # swept or cancelled meanwhile: whoever owns it now decides
        if outcome.discard:
            outcome.discard()
        return "lost"
    if outcome.committed:
        try:
            outcome.committed()
        except Exception:  # noqa: BLE001 - the job is done; a leftover is retention's to clean
            log.warning("job %s: clean-up after success failed", claim.job_id, exc_info=True)
    log.info("job %s succeeded", claim.job_id)
    return JobState.SUCCEEDED.value


def drain(settings: Settings, queue: str, worker: str | None = None, limit: int | None = None,
          detectors: DetectorCache | None = None) -> int:
    """Claim and run jobs of `queue` (fair order) until none is claimable; returns how many ran."""
    ran = 0
    while limit is None or ran < limit:
        claim = jobstore.claim_next(settings.database_url, queue, settings, worker)
        if claim is None:
            break
        run_claim(settings, claim, detectors)
        ran += 1
    return ran
