"""COCO checkpoints for operators with internet: a documented URL, a pinned checksum, tensors only.

Never called at run time, in tests or by the demo. The sha256 pins are the prefixes OpenMMLab
publishes in the file names (`..._20200203-9d4dcb24.pth` = first 8 hex digits of the sha256);
pass a full digest with --sha256 to pin harder.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

_BASE = "https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn"
COCO_CHECKPOINTS: dict[str, dict[str, str]] = {
    "r50": {
        "url": f"{_BASE}/cascade_mask_rcnn_r50_fpn_1x_coco/"
               "cascade_mask_rcnn_r50_fpn_1x_coco_20200203-9d4dcb24.pth",
        "sha256": "9d4dcb24",
    },
    "x101": {
        "url": f"{_BASE}/cascade_mask_rcnn_x101_64x4d_fpn_1x_coco/"
               "cascade_mask_rcnn_x101_64x4d_fpn_1x_coco_20200203-9a2db89d.pth",
        "sha256": "9a2db89d",
    },
}
MAX_BYTES = 2 * 1024**3


class WeightsError(Exception):
    """Download or verification failed; str() is the message."""


def sha256_matches(digest: str, expected: str) -> bool:
    expected = expected.strip().lower()
    return len(expected) >= 8 and digest.lower().startswith(expected)


def download(url: str, dest: Path, progress: Callable[[int], None] | None = None,
             max_bytes: int = MAX_BYTES) -> str:
    """Stream `url` to `dest`; return the sha256 of what was written."""
    if not url.startswith(("https://", "http://", "file://")):
        raise WeightsError(f"unsupported URL {url!r}")
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise WeightsError(f"download larger than {max_bytes >> 20} MB; refusing")
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(size)
    except OSError as error:
        raise WeightsError(f"download failed: {error}") from None
    return digest.hexdigest()


def fetch_checkpoint(url: str, expected_sha256: str, dest: Path,
                     progress: Callable[[int], None] | None = None) -> tuple[Path, str]:
    """Download, verify the checksum, keep only the tensors (weights-only load) at `dest`.

    Nothing is left at `dest` unless every step succeeded.
    """
    import torch

    from segmodel.bundle import BundleError, load_state_dict

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = dest.parent / f".{dest.name}.download-{uuid.uuid4().hex[:8]}"
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        digest = download(url, raw, progress)
        if not sha256_matches(digest, expected_sha256):
            raise WeightsError(f"checksum mismatch: got sha256 {digest[:16]}..., expected {expected_sha256}; "
                               "file discarded")
        try:
            state = load_state_dict(raw)
        except BundleError as error:
            raise WeightsError(str(error)) from None
        torch.save(state, tmp)
        os.replace(tmp, dest)
        return dest, digest
    finally:
        for leftover in (raw, tmp):
            if leftover.exists():
                leftover.unlink()
