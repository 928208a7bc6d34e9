"""The /example file: a small labelled LabelMe sample (image embedded) a user can forward back.

Built from the MODEL engineer's synthetic particles when trainer.synthetic is there; otherwise from a
few drawn discs, so /example never depends on torch or on another area being finished.
"""

from __future__ import annotations

import base64
import io
import json
from functools import lru_cache

import numpy as np


def _discs(size: int = 192, seed: int = 7) -> tuple[np.ndarray, list[dict], dict]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    image = rng.normal(60, 8, (size, size))
    shapes: list[dict] = []
    centres: list[tuple[float, float, float]] = []
    for _ in range(2000):
        if len(centres) >= 20:
            break
        r = float(rng.uniform(6, 11))
        cx, cy = (float(v) for v in rng.uniform(r + 2, size - r - 2, 2))
        if any((cx - x) ** 2 + (cy - y) ** 2 < (r + rr + 3) ** 2 for x, y, rr in centres):
            continue
        centres.append((cx, cy, r))
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] += 120
    image = np.clip(image, 0, 255).astype(np.uint8)
    crop = {"x0": 0.0, "y0": 0.0, "x1": size * 0.75, "y1": size * 0.75}
    for cx, cy, r in centres:
        if not (crop["x0"] <= cx < crop["x1"] and crop["y0"] <= cy < crop["y1"]):
            continue
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        points = [[round(cx + r * np.cos(a), 1), round(cy + r * np.sin(a), 1)] for a in angles]
        shapes.append({"label": "particle", "points": points, "group_id": None, "shape_type": "polygon",
                       "flags": {}})
    return np.stack([image] * 3, axis=-1), shapes, crop


def _from_synthetic() -> tuple[np.ndarray, list[dict], dict] | None:
    try:
        from trainer import synthetic  # MODEL engineer's generator, when present
    except ImportError:
        return None
    make = getattr(synthetic, "make_sample", None) or getattr(synthetic, "synthetic_image", None)
    if make is None:
        return None
    try:
        ann = make(seed=7)
    except Exception:  # noqa: BLE001 - an unexpected signature: fall back to the drawn discs
        return None
    crop = ann.crops[0] if ann.crops else None
    box = {"x0": crop.x0, "y0": crop.y0, "x1": crop.x1, "y1": crop.y1} if crop else {
        "x0": 0.0, "y0": 0.0, "x1": float(ann.width), "y1": float(ann.height)}
    shapes = [{"label": inst.label, "points": [[round(float(x), 1), round(float(y), 1)] for x, y in inst.polygon],
               "group_id": None, "shape_type": "polygon", "flags": {}} for inst in ann.instances]
    return ann.image, shapes, box


@lru_cache(maxsize=1)
def example_labelme() -> tuple[bytes, int]:
    """The sample as LabelMe JSON bytes and its number of labelled objects."""
    from PIL import Image

    made = _from_synthetic() or _discs()
    image, shapes, crop = made
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    rect = {"label": "crop", "points": [[crop["x0"], crop["y0"]], [crop["x1"], crop["y1"]]], "group_id": None,
            "shape_type": "rectangle", "flags": {}}
    doc = {"version": "5.4.1", "flags": {}, "shapes": [rect, *shapes], "imagePath": "segbot_example.png",
           "imageData": base64.b64encode(buffer.getvalue()).decode("ascii"),
           "imageHeight": int(image.shape[0]), "imageWidth": int(image.shape[1])}
    return json.dumps(doc).encode("utf-8"), len(shapes)
