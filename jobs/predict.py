"""The predict job body: uploads and a model in storage -> inference.predict_image per image ->
result files in the store and Result rows, added in the transaction that marks the job done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from jobs.context import JobContext, JobError, Outcome, job_uploads, read_upload, scratch_dir
from storage.models import Job, ModelStatus, Result, TrainedModel
from storage.notices import PREDICT_DONE

_detector_cache: dict[tuple[int, str], Any] = {}


def _detector(ctx: JobContext, model: TrainedModel) -> Any:
    from segmodel.detector import load_detector

    key = (model.id, model.path or "")
    if key not in _detector_cache:
        _detector_cache.clear()  # one model in memory per worker process
        bundle = _bundle_path(ctx, model.path or "")
        _detector_cache[key] = load_detector(bundle, device=ctx.settings.device,
                                             trusted_roots=[ctx.settings.files_dir / "models"])
    return _detector_cache[key]


def _bundle_path(ctx: JobContext, path: str) -> Path:
    """A local copy of the model's bundle (an object store downloads it into its cache once).
    TrainedModel.path is relative to the data dir (files/models/u1/v2)."""
    parts = PurePosixPath(path).parts
    if parts and parts[0] == ctx.settings.files_dir.name:
        local = ctx.store.fetch_dir(PurePosixPath(*parts[1:]).as_posix()) if len(parts) > 1 else None
        if local is not None:
            return local
    return ctx.settings.data_dir / path  # load_detector says what is wrong with it


def _scale_from_bar(loaded: Any) -> bool:
    """The image's scale is its scale bar's reading (the file carries none of its own)."""
    bar = loaded.scale_bar
    return bar is not None and loaded.scale_source == bar.describe()


def predict_job(ctx: JobContext) -> Outcome:
    from dataclasses import replace

    from annotations.labelme import read_labelme
    from imaging.images import read_image
    from inference.pipeline import PredictOptions, predict_image
    from outputs.files import write_outputs
    from outputs.lab_formats import SetEntry, write_result_set
    from segmodel.options import DEFAULT_SCORE_THRESHOLD

    with ctx.session() as session:
        uploads = job_uploads(ctx, session)
        model_id = ctx.params.get("model_id") or ctx.claim.model_id
        model = session.get(TrainedModel, int(model_id)) if model_id else None
        if model is None or model.user_id != ctx.claim.user_id or model.status != ModelStatus.READY:
            raise JobError("The model for this job is not available; train one or pick another with /models.")
        data = {u.id: read_upload(ctx, u) for u in uploads}
    files = {u.original_name: data[u.id] for u in uploads}  # resolves imagePath between uploads
    ctx.progress(0.0, "loading model")
    detector = _detector(ctx, model)
    # auto_scale: particles larger than the labelled ones (another magnification or material) are
    # recognised on the image shrunk to the labelled size (inference/scale.py)
    threshold = ctx.params.get("threshold")  # the user's /threshold; None: segbot's default
    options = PredictOptions(threshold=float(DEFAULT_SCORE_THRESHOLD if threshold is None else threshold),
                             tile=ctx.params.get("tile"),
                             auto_scale=bool(ctx.params.get("auto_scale", True)))
    # The model drops detections below this floor before building masks: low enough for the
    # user's threshold, no lower (dense tiles at 0.05 would hold ~0.5 GB of masks).
    detector.score_thr = min(0.25, options.threshold)
    scratch = scratch_dir(ctx, "predict")
    rows: list[dict[str, Any]] = []
    entries: list[SetEntry] = []
    set_files: dict[str, str] = {}
    try:
        images = [u for u in uploads if u.kind != "zip"]
        for index, upload in enumerate(images):
            ctx.check()
            if upload.kind in ("labelme", "correction"):
                ann = read_labelme(data[upload.id], name=upload.original_name, files=files,
                                   max_pixels=ctx.settings.max_image_pixels)
                image, own_scale = ann.image, ann.nm_per_px
                excluded, source, region_area = [], "the LabelMe file", None
            else:
                loaded = read_image(data[upload.id], name=upload.original_name,
                                    max_pixels=ctx.settings.max_image_pixels, info_bar=True)
                image, own_scale = loaded.image, loaded.nm_per_px
                # an info bar / scale-bar box: no objects there, and not part of the analysed area
                excluded, source = loaded.excluded, loaded.scale_source
                region_area = loaded.analysed_area_px if excluded else None
                if ctx.params.get("scale_bar") is False and _scale_from_bar(loaded):
                    own_scale, source = None, None  # the user said the bar's reading is wrong
            # the user's scale (/scale, a caption, a confirmed bar reading) > the file's > the bar's
            nm_per_px = ctx.params.get("nm_per_px") or own_scale
            if ctx.params.get("nm_per_px"):
                source = ctx.params.get("scale_source") or "the scale you set"

            def tiles(done: int, total: int, index: int = index) -> None:
                ctx.progress((index + done / max(total, 1)) / len(images), f"image {index + 1}/{len(images)}")
                ctx.check()

            prediction = predict_image(image, detector, replace(options, exclude=list(excluded)),
                                       progress=tiles)
            stem = Path(upload.original_name).stem or f"image{index + 1}"
            out_dir = scratch / str(index)
            out_dir.mkdir()
            written = write_outputs(out_dir, stem, image, prediction.instances, nm_per_px=nm_per_px,
                                    title=upload.original_name, region_area_px=region_area,
                                    excluded=excluded, scale_source=source if nm_per_px else None)
            entries.append(SetEntry(stem, upload.original_name, image.shape, prediction.instances,
                                    nm_per_px, region_area))
            files = {role: ctx.store.put_file(path) for role, path in written.items()}
            summary: dict[str, Any] = {}
            if "summary" in written:
                summary = json.loads(Path(written["summary"]).read_text())
            if prediction.stats.get("scale_factor", 1.0) != 1.0:  # the caption says so
                summary["scale_factor"] = prediction.stats["scale_factor"]
            rows.append({"upload_id": upload.id, "image_name": upload.original_name,
                         "image_sha256": upload.sha256, "files": files, "summary": summary})
        if entries:  # the set's COCO JSON and Excel workbook, for the result zip
            written = write_result_set(scratch / "set", entries)  # results_coco.json, results.xlsx
            set_files = {role: ctx.store.put_file(path) for role, path in written.items()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result_ids: list[int] = []

    def record(session: Session, job: Job) -> None:
        result_ids.clear()  # a retried transaction (lost connection) starts over
        for row in rows:
            result = Result(job_id=job.id, user_id=job.user_id, **row)
            session.add(result)
            session.flush()
            result_ids.append(result.id)
        payload["result_ids"] = list(result_ids)
        job.result = {**(job.result or {}), "result_ids": list(result_ids), "set_files": dict(set_files)}

    payload: dict[str, Any] = {"job_id": ctx.job_id, "model_id": model.id, "n_images": len(rows),
                               "n_objects": sum(int(r["summary"].get("n_objects", 0)) for r in rows),
                               "set_files": dict(set_files)}
    return Outcome(result={"n_images": len(rows), "n_objects": payload["n_objects"]},
                   notice_kind=PREDICT_DONE, notice_payload=payload, record=record)


