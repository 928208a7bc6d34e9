"""A result's files in the store: their names (as annotations.export names them), reading one that
may be gone, and a zip of many results."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from storage.files import FileStore, StoreError

ROLE_SUFFIX = {  # the names annotations.export.write_outputs gives its files
    "labelme": ".json",
    "overlay": "_overlay.png",
    "inset": "_inset.png",  # only for small objects: a zoom of the densest region
    "csv": "_objects.csv",
    "histogram": "_hist.png",
    "summary": "_summary.json",
    "text": "_summary.txt",
}
DOCUMENT_ROLES = ("labelme", "csv", "histogram")  # sent as documents under the overlay photo


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


def zip_results(store: FileStore, results: list[dict[str, Any]]) -> bytes:
    """Every result's files in a folder of its own (names made unique)."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for result in results:
            stem = result["name"].rsplit(".", 1)[0]
            while stem in used:
                stem += "_"
            used.add(stem)
            for role, sha in sorted(result["files"].items()):
                data = read_stored(store, sha)
                if data is not None:
                    archive.writestr(f"{stem}/{output_name(stem, role)}", data)
    return buffer.getvalue()
