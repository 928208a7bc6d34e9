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
        shapes.append(
            {"label": "particle", "points": points, "group_id": None, "shape_type": "polygon", "flags": {}}
        )
    return np.stack([image] * 3, axis=-1), shapes, crop


def _from_synthetic() -> bytes | None:
    """LabelMe bytes from trainer.synthetic (one crop of a 256 px scene), or None when it is absent."""
    try:
        from trainer.synthetic import labelme_dict, synthetic_scene, with_crops
    except ImportError:
        return None
    try:
        scene = synthetic_scene(seed=7, size=(256, 256), n_particles=24, n_pits=5, name="segbot_example.png")
        ann = with_crops(scene, n_crops=1, crop_size=150, seed=7)
        return json.dumps(labelme_dict(ann, image_name="segbot_example.png")).encode("utf-8")
    except Exception:  # noqa: BLE001 - a changed signature must not break /example: draw discs instead
        return None


@lru_cache(maxsize=1)
def example_labelme() -> tuple[bytes, int]:
    """The sample as LabelMe JSON bytes and its number of labelled objects."""
    from PIL import Image

    data = _from_synthetic()
    if data is not None:
        shapes = json.loads(data)["shapes"]
        return data, sum(1 for shape in shapes if shape.get("shape_type") != "rectangle")
    image, shapes, crop = _discs()
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    rect = {
        "label": "crop",
        "points": [[crop["x0"], crop["y0"]], [crop["x1"], crop["y1"]]],
        "group_id": None,
        "shape_type": "rectangle",
        "flags": {},
    }
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [rect, *shapes],
        "imagePath": "segbot_example.png",
        "imageData": base64.b64encode(buffer.getvalue()).decode("ascii"),
        "imageHeight": int(image.shape[0]),
        "imageWidth": int(image.shape[1]),
    }
    return json.dumps(doc).encode("utf-8"), len(shapes)
