"""A result's files in the store: their names (as outputs.files names them), reading one that
may be gone, and a zip of many results."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from storage.files import FileStore, StoreError

ROLE_SUFFIX = {  # the names outputs.files.write_outputs gives its files
    "labelme": ".json",
    "overlay": "_overlay.png",
    "inset": "_inset.png",  # only for small objects: a zoom of the densest region
    "csv": "_objects.csv",
    "histogram": "_hist.png",
    "summary": "_summary.json",
    "text": "_summary.txt",
    "labels": "_labels.tif",  # the label image for Fiji, napari, cellpose
    "rois": "_rois.zip",  # the outlines for Fiji's ROI Manager
    "unsure": "_unsure.json",  # what the model found under the threshold, for the Label page's suggestion
}
INTERNAL_ROLES = {"unsure"}  # kept for the pages, not sent with the results (her data export has them)
# Sent as one album of documents under the overlay photo (Telegram takes 2..10 per album): what a
# phone user opens first (LabelMe JSON, CSV), then the histogram, then the files for lab tools.
DOCUMENT_ROLES = ("labelme", "csv", "histogram", "labels", "rois")
SET_NAMES = {"coco": "results_coco.json", "xlsx": "results.xlsx"}  # outputs.lab_formats's, per job


def set_file_name(role: str) -> str:
    return SET_NAMES.get(role, f"results_{role}")


def output_name(stem: str, role: str) -> str:
    return f"{stem}{ROLE_SUFFIX.get(role, '_' + role)}"


def read_stored(store: FileStore, sha: str | None) -> bytes | None:
    """The blob, or None when there is none or it was deleted meanwhile."""
    if not sha:
        return None
    try:
        return store.read_bytes(sha)
    except StoreError:
        return None


def zip_results(
    store: FileStore, results: list[dict[str, Any]], set_files: dict[str, str] | None = None
) -> bytes:
    """Every result's files in a folder of its own (names made unique); the set's files
    (results_coco.json, results.xlsx) at the top."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for role, sha in sorted((set_files or {}).items()):
            data = read_stored(store, sha)
            if data is not None:
                archive.writestr(set_file_name(role), data)
        for result in results:
            stem = result["name"].rsplit(".", 1)[0]
            while stem in used:
                stem += "_"
            used.add(stem)
            for role, sha in sorted(result["files"].items()):
                if role in INTERNAL_ROLES:
                    continue
                data = read_stored(store, sha)
                if data is not None:
                    archive.writestr(f"{stem}/{output_name(stem, role)}", data)
    return buffer.getvalue()
