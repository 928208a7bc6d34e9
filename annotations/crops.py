"""The crop protocol (as in DLgram): rectangles labelled 'crop' mark fully labelled regions.

Objects belong to the crop holding their centre and are clipped to it; objects outside every crop are
ignored (and counted). No crop at all means the whole image is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotations import geometry
from annotations.model import AnnotatedImage, Crop, Instance
from core.i18n import N_, NP_, dump_text, load_text, render


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
        "notes": [dump_text(note) for note in ann.notes],  # JSON: kept in Upload.summary
    }


def _classes(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def _crop_line(lang: str, number: int, crop: dict) -> str:
    classes = f" ({_classes(crop['counts'])})" if len(crop["counts"]) > 1 else ""
    line = render(lang, NP_("crop {i}: {width:.0f}x{height:.0f} px, {n} object{classes}",
                            "crop {i}: {width:.0f}x{height:.0f} px, {n} objects{classes}",
                            i=number, width=crop["width"], height=crop["height"], n=crop["n_objects"],
                            classes=classes))
    if crop["mean_d_px"] is not None:
        line += render(lang, N_(", mean D {d:.1f} px", d=crop["mean_d_px"]))
    return "  " + line


def _objects_lines(lang: str, summary: dict) -> list[str]:
    if not summary["n_objects"]:
        return [render(lang, N_("no objects"))]
    objects = NP_("{n} object: {classes}", "{n} objects: {classes}", n=summary["n_objects"],
                  classes=_classes(summary["counts"]))
    if summary.get("mean_d_nm"):
        mean = N_("mean D {d:.1f} px ({nm:.2f} nm)", d=summary["mean_d_px"], nm=summary["mean_d_nm"])
    else:
        mean = N_("mean D {d:.1f} px", d=summary["mean_d_px"])
    return [render(lang, objects), render(lang, mean)]


def format_summary(summary: dict, lang: str = "en") -> str:
    """A few short lines for a chat message, in `lang`; the notes as summarize_annotation stored them
    (Texts as JSON; a plain str in rows older than that, shown as it is)."""
    size = {"name": summary["name"], "width": summary["width"], "height": summary["height"]}
    if summary.get("nm_per_px"):
        head = N_("{name}: {width}x{height} px, scale {scale:.4g} nm/px", scale=summary["nm_per_px"], **size)
    else:
        head = N_("{name}: {width}x{height} px", **size)
    lines = [render(lang, head)]
    if summary["whole_image"]:
        lines.append(render(lang, N_("no crops: the whole image counts as labelled")))
    else:
        lines.append(render(lang, NP_("{n} crop", "{n} crops", n=summary["n_crops"])))
        lines += [_crop_line(lang, i, c) for i, c in enumerate(summary["crops"], 1)]
    lines += _objects_lines(lang, summary)
    if summary["ignored_outside_crops"]:
        lines.append(render(lang, NP_("{n} object outside every crop ignored",
                                      "{n} objects outside every crop ignored",
                                      n=summary["ignored_outside_crops"])))
    lines += [render(lang, N_("note: {note}", note=load_text(note))) for note in summary.get("notes", [])]
    return "\n".join(lines)
