"""The predict job body: uploads and a model in storage -> inference.predict_image per image ->
result files in the store and Result rows, added in the transaction that marks the job done.

Read top-down: predict_job loads the job's files and model, reads each image (or LabelMe file)
with its scale, recognises its objects, stores its outputs, then the set's files; a PredictRecord
adds the Result rows and makes the notice when the job is marked done."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from core.i18n import N_, Text
from jobs.context import JobContext, JobError, Outcome, job_uploads, read_upload, scratch_dir
from jobs.params import PredictParams
from measures.sizes import find_metal
from segmodel.types import TileDetector
from storage.models import Job, ModelStatus, Result, TrainedModel, Upload
from storage.notices import PredictDoneNotice

if TYPE_CHECKING:
    from imaging.images import LoadedImage
    from inference.pipeline import Prediction, PredictOptions
    from outputs.lab_formats import SetEntry


DETECTOR_FLOOR = 0.25  # the score under which the model's detections are dropped (load_model)


@dataclass
class ImageIn:
    """One image to recognise, with the scale its results are measured in."""

    image: np.ndarray
    nm_per_px: float | None
    scale_source: str | Text | None  # in words (outputs.files writes its English); None without a scale
    excluded: list[Any] = field(default_factory=list)  # info bar / scale-bar boxes: nothing there
    region_area_px: float | None = None  # the analysed area when parts are excluded


@dataclass
class ResultRow:
    """A Result row to add: the image's stored files (role -> sha256) and its summary numbers."""

    upload_id: int
    image_name: str
    image_sha256: str
    files: dict[str, str]
    summary: dict[str, Any]


def predict_job(ctx: JobContext[PredictParams]) -> Outcome:
    uploads, data, model = load_inputs(ctx)
    by_name = {u.original_name: data[u.id] for u in uploads}  # what a LabelMe imagePath is found in
    options = predict_options(ctx.params)
    detector = load_model(ctx, model, options.threshold)
    images = [u for u in uploads if u.kind != "zip"]
    rows: list[ResultRow] = []
    entries: list[SetEntry] = []
    scratch = scratch_dir(ctx, "predict")
    try:
        for index, upload in enumerate(images):
            ctx.check()
            image_in = read_input(ctx, upload, data[upload.id], by_name)
            prediction = recognise(ctx, image_in, detector, options, index, len(images))
            row, entry = store_outputs(ctx, scratch / str(index), upload, image_in, prediction,
                                       stem=Path(upload.original_name).stem or f"image{index + 1}")
            rows.append(row)
            entries.append(entry)
        set_files = store_set_files(ctx, scratch / "set", entries)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    recorder = PredictRecord(ctx.job_id, model.id, rows, set_files)
    return Outcome(result={"n_images": len(rows), "n_objects": recorder.n_objects}, notice=recorder.notice,
                   record=recorder.record)


def load_inputs(ctx: JobContext[PredictParams]) -> tuple[list[Upload], dict[int, bytes], TrainedModel]:
    """The job's uploads with their bytes, and its model (the user's own, ready)."""
    with ctx.session() as session:
        uploads = job_uploads(ctx, session)
        model = session.get(TrainedModel, ctx.params.model_id)
        if model is None or model.user_id != ctx.claim.user_id or model.status != ModelStatus.READY:
            raise JobError(N_("The model for this job is not available; train one or pick another with "
                              "/models."))
        data = {u.id: read_upload(ctx, u) for u in uploads}
    return uploads, data, model


def predict_options(params: PredictParams) -> PredictOptions:
    """auto_scale: particles larger than the labelled ones (another magnification or material) are
    recognised on the image shrunk to the labelled size (inference/scale.py)."""
    from inference.pipeline import PredictOptions
    from segmodel.options import DEFAULT_SCORE_THRESHOLD

    threshold = DEFAULT_SCORE_THRESHOLD if params.threshold is None else params.threshold
    # what the model found under her threshold is kept apart, for "Label where it helps most"
    return PredictOptions(threshold=float(threshold), tile=params.tile, auto_scale=params.auto_scale,
                          unsure_floor=DETECTOR_FLOOR)


def load_model(ctx: JobContext[PredictParams], model: TrainedModel, threshold: float) -> TileDetector:
    """The model's detector from the worker's cache (one model in memory per worker process)."""
    from segmodel.detector import MMDetDetector

    ctx.progress(0.0, "loading model")
    key = (str(ctx.settings.data_dir), model.id, model.path or "")
    detector = ctx.detectors.get(key, lambda: bundle_path(ctx, model.path or ""), ctx.settings)
    if isinstance(detector, MMDetDetector):
        # The model drops detections below this floor before building masks: low enough for the
        # user's threshold, no lower (dense tiles at 0.05 would hold ~0.5 GB of masks).
        detector.score_thr = min(DETECTOR_FLOOR, threshold)
    return detector


def bundle_path(ctx: JobContext[Any], path: str) -> Path:
    """A local copy of the model's bundle (an object store downloads it into its cache once).
    TrainedModel.path is relative to the data dir (files/models/u1/v2)."""
    parts = PurePosixPath(path).parts
    if parts and parts[0] == ctx.settings.files_dir.name:
        local = ctx.store.fetch_dir(PurePosixPath(*parts[1:]).as_posix()) if len(parts) > 1 else None
        if local is not None:
            return local
    return ctx.settings.data_dir / path  # load_detector says what is wrong with it


def read_input(ctx: JobContext[PredictParams], upload: Upload, data: bytes,
               by_name: dict[str, bytes]) -> ImageIn:
    """The image of an upload and its scale: the user's (/scale, a caption, a confirmed bar
    reading) over the file's own over its scale bar's."""
    from annotations.labelme import read_labelme
    from imaging.images import read_image

    params, max_pixels = ctx.params, ctx.settings.max_image_pixels
    if upload.kind in ("labelme", "correction"):
        ann = read_labelme(data, name=upload.original_name, files=by_name, max_pixels=max_pixels)
        image_in = ImageIn(ann.image, ann.nm_per_px, "the LabelMe file")
    else:
        loaded = read_image(data, name=upload.original_name, max_pixels=max_pixels, info_bar=True)
        # an info bar / scale-bar box: no objects there, and not part of the analysed area
        image_in = ImageIn(loaded.image, loaded.nm_per_px, loaded.scale_source, list(loaded.excluded),
                           loaded.analysed_area_px if loaded.excluded else None)
        if not params.scale_bar and _scale_from_bar(loaded):  # the user said the bar's reading is wrong
            image_in = replace(image_in, nm_per_px=None, scale_source=None)
    if params.nm_per_px:
        return replace(image_in, nm_per_px=params.nm_per_px,
                       scale_source=params.scale_source or "the scale you set")
    return image_in


def _scale_from_bar(loaded: LoadedImage) -> bool:
    """The image's scale is its scale bar's reading (the file carries none of its own)."""
    bar = loaded.scale_bar
    return bar is not None and loaded.scale_source == bar.source_text()


def recognise(ctx: JobContext[PredictParams], image_in: ImageIn, detector: TileDetector,
              options: PredictOptions, index: int, count: int) -> Prediction:
    from inference.pipeline import predict_image

    def tiles(done: int, total: int) -> None:
        ctx.progress((index + done / max(total, 1)) / count, f"image {index + 1}/{count}")
        ctx.check()

    return predict_image(image_in.image, detector, replace(options, exclude=list(image_in.excluded)),
                         progress=tiles)


def store_outputs(ctx: JobContext[PredictParams], out_dir: Path, upload: Upload, image_in: ImageIn,
                  prediction: Prediction, stem: str) -> tuple[ResultRow, SetEntry]:
    """The image's result files (overlay, LabelMe, tables ...) into the store, and its set entry."""
    from outputs.files import write_outputs
    from outputs.lab_formats import SetEntry

    out_dir.mkdir()
    scale = image_in.nm_per_px
    written = write_outputs(out_dir, stem, image_in.image, prediction.instances, nm_per_px=scale,
                            title=upload.original_name, region_area_px=image_in.region_area_px,
                            excluded=image_in.excluded, scale_source=image_in.scale_source if scale else None,
                            metal=find_metal(ctx.params.metal))
    if prediction.unsure:  # where the model was unsure, for the Label page's suggestion
        from annotations.suggest import unsure_json

        written["unsure"] = out_dir / f"{stem}_unsure.json"
        written["unsure"].write_bytes(unsure_json(prediction.unsure))
    stored = {role: ctx.store.put_file(path) for role, path in written.items()}
    summary: dict[str, Any] = json.loads(Path(written["summary"]).read_text()) if "summary" in written else {}
    if prediction.stats.get("scale_factor", 1.0) != 1.0:  # the caption says so
        summary["scale_factor"] = prediction.stats["scale_factor"]
    entry = SetEntry(stem, upload.original_name, image_in.image.shape, prediction.instances, scale,
                     image_in.region_area_px)
    return ResultRow(upload.id, upload.original_name, upload.sha256, stored, summary), entry


def store_set_files(ctx: JobContext[PredictParams], out_dir: Path, entries: list[SetEntry]) -> dict[str, str]:
    """The set's COCO JSON and Excel workbook (for the result zip): role -> sha256."""
    from outputs.lab_formats import write_result_set

    if not entries:
        return {}
    written = write_result_set(out_dir, entries, metal=find_metal(ctx.params.metal))  # COCO JSON, xlsx
    return {role: ctx.store.put_file(path) for role, path in written.items()}


@dataclass
class PredictRecord:
    """The Result rows, added in the job's finishing transaction, and the notice that names them."""

    job_id: int
    model_id: int
    rows: list[ResultRow]
    set_files: dict[str, str]
    result_ids: list[int] = field(default_factory=list)  # what `record` added

    @property
    def n_objects(self) -> int:
        return sum(int(row.summary.get("n_objects", 0)) for row in self.rows)

    def record(self, session: Session, job: Job) -> None:
        self.result_ids.clear()  # a retried transaction (lost connection) starts over
        for row in self.rows:
            result = Result(job_id=job.id, user_id=job.user_id, upload_id=row.upload_id,
                            image_name=row.image_name, image_sha256=row.image_sha256, files=row.files,
                            summary=row.summary)
            session.add(result)
            session.flush()
            self.result_ids.append(result.id)
        job.result = {**(job.result or {}), "result_ids": list(self.result_ids),
                      "set_files": dict(self.set_files)}

    def notice(self, job: Job) -> PredictDoneNotice:
        return PredictDoneNotice(job_id=self.job_id, model_id=self.model_id, n_images=len(self.rows),
                           n_objects=self.n_objects, result_ids=list(self.result_ids),
                           set_files=dict(self.set_files))
