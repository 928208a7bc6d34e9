"""The crop protocol (as in DLgram): rectangles labelled 'crop' mark fully labelled regions.

Objects belong to the crop holding their centre and are clipped to it; objects outside every crop are
ignored (and counted). No crop at all means the whole image is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotations import geometry
from annotations.model import AnnotatedImage, Crop, Instance


@dataclass
class CropRegion:
    """One training region: its rectangle and its objects, in image pixel coordinates (clipped)."""

    crop: Crop
    instances: list[Instance] = field(default_factory=list)
    whole_image: bool = False

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inst in self.instances:
            out[inst.label] = out.get(inst.label, 0) + 1
        return dict(sorted(out.items()))

    def bounds(self) -> tuple[int, int, int, int]:
        """Integer pixel bounds (x0, y0, x1, y1) covering the crop."""
        c = self.crop
        return int(np.floor(c.x0)), int(np.floor(c.y0)), int(np.ceil(c.x1)), int(np.ceil(c.y1))

    def cut(self, image: np.ndarray) -> np.ndarray:
        """The crop's pixels."""
        x0, y0, x1, y1 = self.bounds()
        return image[y0:y1, x0:x1]

    def local_instances(self) -> list[Instance]:
        """Instances shifted into the coordinates of `cut(image)`."""
        x0, y0, _, _ = self.bounds()
        shift = np.array([x0, y0], dtype=np.float64)
        return [Instance(i.label, i.polygon - shift, i.score) for i in self.instances]


def centroids(instances: list[Instance]) -> np.ndarray:
    return geometry.area_centroid_perimeter([i.polygon for i in instances])[1]


def _clip(inst: Instance, crop: Crop) -> Instance | None:
    box = geometry.bboxes([inst.polygon])[0]
    if box[0] >= crop.x0 and box[1] >= crop.y0 and box[2] <= crop.x1 and box[3] <= crop.y1:
        return inst
    import shapely

    clipped = shapely.clip_by_rect(shapely.Polygon(inst.polygon), crop.x0, crop.y0, crop.x1, crop.y1)
    parts = [g for g in getattr(clipped, "geoms", [clipped]) if g.geom_type == "Polygon" and g.area > 0]
    if not parts:
        return None
    best = max(parts, key=lambda g: g.area)
    return Instance(inst.label, np.asarray(best.exterior.coords)[:-1], inst.score)


def assign(ann: AnnotatedImage) -> tuple[list[CropRegion], int]:
    """(regions, number of objects outside every crop)."""
    if not ann.crops:
        whole = Crop(0.0, 0.0, float(ann.width), float(ann.height))
        return [CropRegion(whole, list(ann.instances), whole_image=True)], 0
    regions = [CropRegion(c) for c in ann.crops]
    if not ann.instances:
        return regions, 0
    cents = centroids(ann.instances)
    outside = 0
    for inst, (cx, cy) in zip(ann.instances, cents, strict=True):
        for region in regions:  # first crop holding the centre wins (crops rarely overlap)
            if region.crop.contains(cx, cy):
                clipped = _clip(inst, region.crop)
                if clipped is not None:
                    region.instances.append(clipped)
                break
        else:
            outside += 1
    return regions, outside


def training_regions(ann: AnnotatedImage) -> list[CropRegion]:
    """Crop rectangles with their objects assigned by centre and clipped; the whole image if no crop."""
    return assign(ann)[0]


def _mean_d(instances: list[Instance]) -> float | None:
    if not instances:
        return None
    areas = geometry.area_centroid_perimeter([i.polygon for i in instances])[0]
    return float(np.mean(2.0 * np.sqrt(areas / np.pi)))


def _counts(instances: list[Instance]) -> dict[str, int]:
    out: dict[str, int] = {}
    for inst in instances:
        out[inst.label] = out.get(inst.label, 0) + 1
    return dict(sorted(out.items()))


def summarize_annotation(ann: AnnotatedImage) -> dict:
    """What a user sees after uploading a LabelMe file: crops, objects per class, sizes, what was ignored."""
    regions, outside = assign(ann)
    used = [i for r in regions for i in r.instances]
    per_class_d = {}
    for label in sorted({i.label for i in used}):
        per_class_d[label] = _mean_d([i for i in used if i.label == label])
    crops = []
    for r in regions:
        crops.append(
            {
                "x0": r.crop.x0,
                "y0": r.crop.y0,
                "x1": r.crop.x1,
                "y1": r.crop.y1,
                "width": r.crop.width,
                "height": r.crop.height,
                "n_objects": len(r.instances),
                "counts": r.counts,
                "mean_d_px": _mean_d(r.instances),
            }
        )
    mean_d = _mean_d(used)
    return {
        "name": ann.name,
        "width": ann.width,
        "height": ann.height,
        "whole_image": not ann.crops,
        "n_crops": len(ann.crops),
        "crops": crops,
        "n_objects": len(used),
        "counts": _counts(used),
        "mean_d_px": mean_d,
        "mean_d_px_by_class": per_class_d,
        "nm_per_px": ann.nm_per_px,
        "mean_d_nm": mean_d * ann.nm_per_px if (mean_d is not None and ann.nm_per_px) else None,
        "ignored_outside_crops": outside,
        "notes": list(ann.notes),
    }


_TEXT = {
    "en": {
        "image": "{name}: {w}x{h} px",
        "scale": "scale {s:.4g} nm/px",
        "whole": "no crops: the whole image counts as labelled",
        "crops": "{n} crop(s)",
        "crop": "  crop {i}: {w:.0f}x{h:.0f} px, {n} object(s){classes}{d}",
        "objects": "{n} object(s): {classes}",
        "mean": "mean D {d:.1f} px{nm}",
        "ignored": "{n} object(s) outside every crop ignored",
        "none": "no objects",
        "mean_short": ", mean D {d:.1f} px",
    },
    "ru": {
        "image": "{name}: {w}x{h} пикс.",
        "scale": "масштаб {s:.4g} нм/пикс.",
        "whole": "кропов нет: размеченным считается всё изображение",
        "crops": "кропов: {n}",
        "crop": "  кроп {i}: {w:.0f}x{h:.0f} пикс., объектов: {n}{classes}{d}",
        "objects": "объектов: {n} ({classes})",
        "mean": "средний D {d:.1f} пикс.{nm}",
        "ignored": "объектов вне кропов (не учтены): {n}",
        "none": "объектов нет",
        "mean_short": ", средний D {d:.1f} пикс.",
    },
}


def format_summary(summary: dict, lang: str = "en") -> str:
    """A few short lines for a chat message (lang 'en' or 'ru')."""
    t = _TEXT.get(lang, _TEXT["en"])
    lines = [t["image"].format(name=summary["name"], w=summary["width"], h=summary["height"])]
    if summary.get("nm_per_px"):
        lines[0] += ", " + t["scale"].format(s=summary["nm_per_px"])
    if summary["whole_image"]:
        lines.append(t["whole"])
    else:
        lines.append(t["crops"].format(n=summary["n_crops"]))
        for i, c in enumerate(summary["crops"], 1):
            classes = ""
            if len(c["counts"]) > 1:
                classes = " (" + ", ".join(f"{k} {v}" for k, v in c["counts"].items()) + ")"
            d = t["mean_short"].format(d=c["mean_d_px"]) if c["mean_d_px"] is not None else ""
            lines.append(
                t["crop"].format(i=i, w=c["width"], h=c["height"], n=c["n_objects"], classes=classes, d=d)
            )
    if summary["n_objects"]:
        classes = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
        lines.append(t["objects"].format(n=summary["n_objects"], classes=classes))
        nm = f" ({summary['mean_d_nm']:.2f} nm)" if summary.get("mean_d_nm") else ""
        if lang == "ru" and nm:
            nm = f" ({summary['mean_d_nm']:.2f} нм)"
        lines.append(t["mean"].format(d=summary["mean_d_px"], nm=nm))
    else:
        lines.append(t["none"])
    if summary["ignored_outside_crops"]:
        lines.append(t["ignored"].format(n=summary["ignored_outside_crops"]))
    lines.extend(f"note: {n}" if lang != "ru" else f"примечание: {n}" for n in summary.get("notes", []))
    return "\n".join(lines)
