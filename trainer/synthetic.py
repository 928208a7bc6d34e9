"""Synthetic microscope-like particle images with exact labels, for tests, the demo and benches.

Bright particles (class `particle`, some touching in pairs) and smaller dark pits (class `pit`)
on an uneven, noisy background, slightly blurred like an SEM/STM image. `with_crops` keeps only
what a user would label inside a few rectangles; `labelme_dict` writes it as a real LabelMe file
(crop rectangles labelled "crop").
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotations.geometry import polygon_to_mask
from annotations.model import AnnotatedImage, Crop, Instance

CLASSES = ("particle", "pit")


def _ellipse(cx: float, cy: float, a: float, b: float, angle: float, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _fits(cx: float, cy: float, r: float, placed: list[tuple[float, float, float]], gap: float) -> bool:
    return all((cx - x) ** 2 + (cy - y) ** 2 >= (r + pr + gap) ** 2 for x, y, pr in placed)


def synthetic_scene(
    seed: int = 0,
    size: tuple[int, int] = (512, 512),
    n_particles: int = 70,
    n_pits: int = 15,
    radius: tuple[float, float] = (5.0, 11.0),
    pairs: float = 0.25,
    noise: float = 10.0,
    name: str | None = None,
) -> AnnotatedImage:
    """One fully labelled image (crops empty = everything labelled)."""
    # Every random draw comes from `rng`, in a fixed order: the tests and benchmarks depend on the
    # exact images a seed gives.
    rng = np.random.default_rng(seed)
    scene = _Scene(_background(rng, *size))
    for _ in range(n_particles):
        _add(scene, rng, "particle", radius[0], radius[1], 220.0, None)
        if scene.placed and rng.random() < pairs:
            _add(scene, rng, "particle", radius[0], radius[1], 210.0, scene.placed[-1])
    for _ in range(n_pits):
        _add(scene, rng, "pit", radius[0] * 0.6, radius[0] * 1.1, 15.0, None)
    image = _blurred_noisy_rgb(scene.image, rng, noise)
    return AnnotatedImage(name=name or f"synthetic_{seed}.png", image=image, instances=scene.instances,
                          crops=[])


MARGIN = 3  # px between any object and the image border


@dataclass
class _Scene:
    """The image being painted (float32 gray) and what is on it so far."""

    image: np.ndarray
    instances: list[Instance] = field(default_factory=list)
    placed: list[tuple[float, float, float]] = field(default_factory=list)  # (cx, cy, a) of each object


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Uneven illumination: a tilted plane plus a broad bump, float32."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bx, by = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.2, 0.8)
    bump = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * (0.35 * max(h, w)) ** 2))
    background = 70 + 25 * (xx / w) + 15 * (yy / h) + 20 * bump
    return background.astype(np.float32)


def _add(scene: _Scene, rng: np.random.Generator, label: str, r_lo: float, r_hi: float, level: float,
         near: tuple[float, float, float] | None) -> None:
    """One elliptical object of brightness `level`, where it keeps clear of the others (touching
    `near` when given); nothing after 60 tries."""
    for _ in range(60):
        spot = _free_spot(scene, rng, r_lo, r_hi, near)
        if spot is None:
            continue
        cx, cy, a, b = spot
        poly = _ellipse(cx, cy, a, b, rng.uniform(0, math.pi))
        _paint(scene.image, poly, b, level, rng)
        scene.instances.append(Instance(label, poly))
        scene.placed.append((cx, cy, a))
        return


def _free_spot(scene: _Scene, rng: np.random.Generator, r_lo: float, r_hi: float,
               near: tuple[float, float, float] | None) -> tuple[float, float, float, float] | None:
    """A random (cx, cy, a, b) ellipse inside the margins and clear of the placed objects (or
    touching `near`, barely overlapping it), or None where this draw does not fit."""
    h, w = scene.image.shape
    a = rng.uniform(r_lo, r_hi)
    b = a * rng.uniform(0.75, 1.0)
    if near is not None:
        px, py, pr = near
        ang = rng.uniform(0, 2 * math.pi)
        dist = pr + a * 0.95  # touching, barely overlapping outlines
        cx, cy = px + dist * math.cos(ang), py + dist * math.sin(ang)
        gap = -0.3 * a
    else:
        cx, cy = rng.uniform(MARGIN + a, w - MARGIN - a), rng.uniform(MARGIN + a, h - MARGIN - a)
        gap = 2.0
    if not (MARGIN + a <= cx <= w - MARGIN - a and MARGIN + a <= cy <= h - MARGIN - a):
        return None
    others = [p for p in scene.placed if near is None or p != near]
    if not _fits(cx, cy, a, others, gap):
        return None
    return cx, cy, a, b


def _paint(image: np.ndarray, poly: np.ndarray, b: float, level: float, rng: np.random.Generator) -> None:
    """Paint the outline's pixels (exactly the labelled ones) with a dome-shaped intensity, brighter
    in the middle like a particle's height profile."""
    import cv2

    mask = polygon_to_mask(poly, *image.shape).astype(np.uint8)
    dist_map = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    profile = np.clip(dist_map / max(1.0, b * 0.6), 0, 1) ** 0.5
    image[mask > 0] = (image[mask > 0] * (1 - profile[mask > 0] * 0.85)
                       + level * rng.uniform(0.85, 1.1) * profile[mask > 0] * 0.85)


def _blurred_noisy_rgb(image: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """The painted scene slightly blurred like an SEM/STM image, with Gaussian noise, as uint8 RGB."""
    import cv2

    image = cv2.GaussianBlur(image, (0, 0), 1.0)
    image += rng.normal(0, noise, size=image.shape).astype(np.float32)
    gray = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _bbox(poly: np.ndarray) -> tuple[float, float, float, float]:
    return float(poly[:, 0].min()), float(poly[:, 1].min()), float(poly[:, 0].max()), float(poly[:, 1].max())


def with_crops(ann: AnnotatedImage, n_crops: int = 2, crop_size: int = 160, seed: int = 0) -> AnnotatedImage:
    """What a user labels: a few non-overlapping rectangles with every object touching them."""
    rng = np.random.default_rng(seed + 1000)
    crops: list[Crop] = []
    for _ in range(200):
        if len(crops) == n_crops:
            break
        x0 = float(rng.integers(0, max(1, ann.width - crop_size)))
        y0 = float(rng.integers(0, max(1, ann.height - crop_size)))
        c = Crop(x0, y0, min(ann.width, x0 + crop_size), min(ann.height, y0 + crop_size))
        if all(c.x1 <= o.x0 or o.x1 <= c.x0 or c.y1 <= o.y0 or o.y1 <= c.y0 for o in crops):
            crops.append(c)
    kept = []
    for inst in ann.instances:
        bx0, by0, bx1, by1 = _bbox(inst.polygon)
        if any(bx1 > c.x0 and bx0 < c.x1 and by1 > c.y0 and by0 < c.y1 for c in crops):
            kept.append(inst)
    return AnnotatedImage(name=ann.name, image=ann.image, instances=kept, crops=crops,
                          nm_per_px=ann.nm_per_px, notes=list(ann.notes))


def labelme_dict(ann: AnnotatedImage, image_name: str | None = None,
                 crop_label: str = "crop") -> dict[str, Any]:
    """A LabelMe 5 document: polygons for objects, rectangles labelled `crop`, the image embedded."""
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(ann.image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise RuntimeError("PNG encoding failed")
    shapes: list[dict[str, Any]] = [
        {"label": inst.label, "points": [[round(float(x), 2), round(float(y), 2)] for x, y in inst.polygon],
         "group_id": None, "description": "", "shape_type": "polygon", "flags": {}}
        for inst in ann.instances
    ]
    shapes += [
        {"label": crop_label, "points": [[c.x0, c.y0], [c.x1, c.y1]], "group_id": None, "description": "",
         "shape_type": "rectangle", "flags": {}}
        for c in ann.crops
    ]
    return {
        "version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_name or ann.name,
        "imageData": base64.b64encode(png.tobytes()).decode("ascii"),
        "imageHeight": ann.height, "imageWidth": ann.width,
    }


def demo_pair(seed: int = 7, size: tuple[int, int] = (512, 512)) -> tuple[AnnotatedImage, AnnotatedImage]:
    """A training image labelled in three crops and an unseen, fully labelled test image."""
    full = synthetic_scene(seed, size, name="demo_train.png")
    train = with_crops(full, n_crops=3, crop_size=170, seed=seed)
    test = synthetic_scene(seed + 1, size, name="demo_test.png")
    return train, test


def stem_scene(
    seed: int = 0,
    size: tuple[int, int] = (512, 512),
    n_particles: int = 7,
    n_sites: int = 280,
    particle_radius: tuple[float, float] = (9.0, 16.0),
    site_diameter: tuple[float, float] = (2.0, 8.0),
    noise: float = 8.0,
    name: str | None = None,
) -> AnnotatedImage:
    """A HAADF-STEM-like image with two classes, as in the iOk single-atom case (Okunev et al.):
    a few bright nanoparticles (`particle`) and many 2-8 px bright dots (`single_site`) on a dark,
    textured support. Sites are Gaussian spots; their label is the disc where the spot is above half
    its peak (what a person outlines), so D runs over `site_diameter`."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    support = rng.normal(0, 1, size=(h // 8 + 2, w // 8 + 2)).astype(np.float32)
    support = cv2.resize(cv2.GaussianBlur(support, (0, 0), 1.5), (w, h), interpolation=cv2.INTER_CUBIC)
    image = 35 + 8 * support
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    instances: list[Instance] = []
    placed: list[tuple[float, float, float]] = []
    for label, count in (("particle", n_particles), ("single_site", n_sites)):
        for _ in range(count):
            for _ in range(60):
                if label == "particle":
                    r = rng.uniform(*particle_radius)
                else:
                    r = rng.uniform(*site_diameter) / 2
                cx, cy = rng.uniform(4 + r, w - 4 - r), rng.uniform(4 + r, h - 4 - r)
                if _fits(cx, cy, r, placed, 3.0):
                    break
            else:
                continue
            if label == "particle":
                poly = _ellipse(cx, cy, r, r * rng.uniform(0.8, 1.0), rng.uniform(0, math.pi))
                mask = polygon_to_mask(poly, h, w)
                image[mask] = 150 + 40 * rng.random() + 10 * support[mask]
            else:
                # a Gaussian spot whose half-maximum contour is the circle of radius r
                sigma = r / math.sqrt(2 * math.log(2))
                peak = rng.uniform(90, 160)
                x0, x1, y0, y1 = (max(0, int(cx - 4 * sigma - 1)), min(w, int(cx + 4 * sigma + 2)),
                                  max(0, int(cy - 4 * sigma - 1)), min(h, int(cy + 4 * sigma + 2)))
                d2 = (xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2
                image[y0:y1, x0:x1] += peak * np.exp(-d2 / (2 * sigma ** 2))
                poly = _ellipse(cx, cy, max(r, 1.0), max(r, 1.0), 0.0, n=16)
            instances.append(Instance(label, poly))
            placed.append((cx, cy, r))
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.6)
    image += rng.normal(0, noise, size=image.shape).astype(np.float32)
    gray = np.clip(image, 0, 255).astype(np.uint8)
    return AnnotatedImage(name=name or f"stem_{seed}.png", image=np.repeat(gray[:, :, None], 3, axis=2),
                          instances=instances, crops=[])
