"""Typed job parameters: one frozen dataclass per job kind, the only way to make a job.

The class names its kind (`class TrainParams(JobParams, kind=JobKind.TRAIN)`); jobqueue.store.submit_job
takes an instance, stores `to_json()` in `Job.params` and the kind in `Job.kind`; the runner parses the
row ONCE, before the body starts, into the same class. Rows written by older code (plain dicts with
the same keys) parse too; a row that does not fit fails its job with a ParamsError (a JobError: the
user reads why), never a KeyError.

The product's kinds are `storage.models.JobKind` members; test fakes and benchmarks declare their
own small params classes with a plain string kind, registered the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from core.i18n import N_
from jobs.errors import JobError
from measures.sizes import find_metal
from segmodel.options import OptionsError, TrainOptions
from storage.models import Job, JobKind
from storage.records import JsonRecord, RecordError

KIND_MAX = 16  # Job.kind is a String(16)


class ParamsError(JobError):
    """A job's stored params do not fit its kind's class; str() is the user's message."""


@dataclass(frozen=True, kw_only=True)
class JobParams(JsonRecord):
    """Base of every kind's params; a subclass with `kind=` in its class statement registers it."""

    kind: ClassVar[str]

    def __init_subclass__(cls, kind: str | None = None, **rest: Any) -> None:
        super().__init_subclass__(**rest)
        if kind is None:  # a shared base (UploadParams): not a kind of its own
            return
        if not kind or len(kind) > KIND_MAX or not kind.replace("_", "").isalnum():
            raise ValueError(f"job kind {kind!r}: 1 to {KIND_MAX} letters, digits or '_'")
        known = PARAMS_TYPES.get(kind)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"job kind {kind!r} is taken by {known.__module__}.{known.__qualname__}")
        cls.kind = kind
        PARAMS_TYPES[kind] = cls

    @classmethod
    def from_row(cls, kind: str, raw: object) -> Self:
        """The params of a stored job of `kind`; ParamsError when the row is not of this class."""
        if kind != cls.kind:
            raise ParamsError(N_("This is a {kind} job, not a {expected} job.", kind=kind, expected=cls.kind))
        try:
            return cls.from_json(raw)
        except RecordError as error:
            raise ParamsError(N_("This job's settings cannot be read ({error}); please send it again.",
                                 error=str(error))) from None

    @classmethod
    def from_job(cls, job: Job) -> Self:
        return cls.from_row(job.kind, job.params or {})


P = TypeVar("P", bound=JobParams)
PARAMS_TYPES: dict[str, type[JobParams]] = {}  # kind -> its params class


def params_type(kind: str) -> type[JobParams]:
    """The params class of `kind`; ParamsError for a kind no class in this process declares."""
    found = PARAMS_TYPES.get(kind)
    if found is None:
        raise ParamsError(N_("This worker does not know jobs of kind '{kind}'. Please tell the "
                             "administrator.", kind=kind))
    return found


def parse_params(kind: str, raw: object) -> JobParams:
    """A stored job's params as its kind's class (for readers of every kind, such as retention)."""
    return params_type(kind).from_row(kind, raw)


@dataclass(frozen=True, kw_only=True)
class UploadParams(JobParams):
    """Params of a job that works on the user's uploads (they are kept while it waits or runs)."""

    upload_ids: tuple[int, ...] = ()  # in the order the user sent them


@dataclass(frozen=True, kw_only=True)
class TrainParams(UploadParams, kind=JobKind.TRAIN):
    """Train a model on LabelMe uploads. `options`: the user's choices (segmodel.options.TrainOptions
    names; the rest are the preset's defaults); the worker's device replaces theirs."""

    options: Mapping[str, Any] = field(default_factory=dict)
    correction_of: int | None = None  # the correction upload this set was made for (a second press finds it)
    activate: bool = True  # the new model becomes the user's active one

    def __post_init__(self) -> None:
        self.train_options("cpu")  # an option no training can use is refused where the job is made

    def train_options(self, device: str) -> TrainOptions:
        """The options this job trains with on a worker of `device` (OptionsError: the user's message).
        from_user: never an init path from a job (it would load any file on the worker)."""
        try:
            return TrainOptions.from_user({**self.options, "device": device})
        except OptionsError:
            raise
        except (TypeError, ValueError) as error:
            raise OptionsError(str(error)) from None  # the job says "These training options cannot be used"


@dataclass(frozen=True, kw_only=True)
class PredictParams(UploadParams, kind=JobKind.PREDICT):
    """Recognise the objects on image (and LabelMe) uploads with one of the user's models."""

    model_id: int
    threshold: float | None = None  # the user's /threshold; None: segbot's default
    nm_per_px: float | None = None  # the user's scale (/scale, a caption, a confirmed bar reading)
    scale_source: str | None = None  # where nm_per_px comes from, in the user's words
    scale_bar: bool = True  # False: the user said the scale bar's reading is wrong
    tile: int | None = None  # tile side in px; None: the model's
    auto_scale: bool = True  # particles larger than the labelled ones are found on a shrunk image
    metal: str | None = None  # the user's /metal: the result files give the dispersion for it

    def __post_init__(self) -> None:
        if self.metal is not None and find_metal(self.metal) is None:
            raise ValueError(f"metal {self.metal!r} is not in the dispersion table")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} is not between 0 and 1")
        if self.nm_per_px is not None and not self.nm_per_px > 0:
            raise ValueError(f"nm_per_px {self.nm_per_px} is not positive")
