"""The overlay pictures: outlines by class, ids beside the objects where they fit, a legend and a
scale bar; and, when the objects are too small to judge in the whole picture, a zoomed inset of its
densest region (the same ids). Layout decisions are in outputs.overlay_layout."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotations.model import Instance
from outputs.overlay_layout import (
    Box,
    InsetWindow,
    id_font_px,
    inset_window,
    line_width,
    median_d,
    place_ids,
    text_sizes,
)

# matplotlib's tab10, RGB
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
FRAME = (255, 215, 0)  # the inset's region on the overlay: a colour no class gets
IDS_OFF_NOTE = "ids: see the CSV"
NOTE_LINE = (IDS_OFF_NOTE, WHITE, False)


def class_colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {label: PALETTE[k % len(PALETTE)] for k, label in enumerate(sorted(set(labels)))}


def _font(size: int):
    from PIL import ImageFont

    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)  # has Cyrillic, Greek (µ)
    except Exception:  # noqa: BLE001 - any font problem: Pillow's own font
        return ImageFont.load_default(size)


def nice_scale_bar(width_px: int, nm_per_px: float) -> tuple[float, str]:
    """(length in nm, label) of a 1/2/5 x 10^k bar about a fifth of the image wide."""
    target = width_px * nm_per_px / 5
    exp = math.floor(math.log10(target))
    length = max((m * 10**exp for m in (1, 2, 5) if m * 10**exp <= target), default=10**exp)
    if length >= 1000:
        value = length / 1000
        label = f"{value:g} µm"
    else:
        label = f"{length:g} nm"
    return length, label


@dataclass
class Picture:
    """One rendered picture and what was drawn on it, for tests and callers to check."""

    rgb: np.ndarray
    id_boxes: dict[int, Box] = field(default_factory=dict)  # object index (id - 1) -> its id's box
    ids_shown: bool = False
    line_width: int = 1
    font_px: int = 0
    legend_box: Box | None = None
    legend: list[str] = field(default_factory=list)  # its lines, as drawn


@dataclass
class Pictures:
    overlay: Picture
    inset: Picture | None = None
    window: InsetWindow | None = None  # where the inset comes from, in image pixels


@dataclass
class _Scene:
    """What one picture shows, in its own pixel coordinates."""

    polygons: list[np.ndarray]
    labels: list[str]
    index: list[int]  # each polygon's object index in the whole image (its id - 1)
    wanted: list[int]  # positions in `polygons` that should get an id
    nm_per_px: float | None
    header: list[str]
    colours: dict[str, tuple[int, int, int]]
    counts: dict[str, int] | None  # per class; None: the picture shows only part of them
    strip: bool = False  # the legend in a strip above the picture, covering nothing


@dataclass
class _Shapes:
    """What the layout needs of each object (measure_arrays would also compute Feret diameters)."""

    d_px: np.ndarray
    centroid: np.ndarray
    bbox: np.ndarray

    @classmethod
    def of(cls, instances: list[Instance]) -> _Shapes:
        from annotations.geometry import area_centroid_perimeter, bboxes

        polygons = [i.polygon for i in instances]
        area, centroid, _ = area_centroid_perimeter(polygons)
        return cls(2 * np.sqrt(area / np.pi), centroid, bboxes(polygons))


SMALL_D = 16.0  # px: below this an outline on the object's rim would hide the rim; draw it just outside
SUBPIXEL = 2  # bits of sub-pixel precision for cv2.polylines: outlines of 7 px objects keep their shape


def render_pictures(
    image: np.ndarray,
    instances: list[Instance],
    nm_per_px: float | None = None,
    *,
    show_ids: bool | None = None,
    title: str | None = None,
    inset: bool = True,
) -> Pictures:
    """The overlay (RGB, the image's size) and, for small objects, the zoomed inset.

    show_ids: None draws ids when every one fits beside its object, True draws them anyway, False never."""
    canvas = np.ascontiguousarray(image.copy())
    colours = class_colours([i.label for i in instances])
    counts: dict[str, int] = {}
    for inst in instances:
        counts[inst.label] = counts.get(inst.label, 0) + 1
    a = _Shapes.of(instances)
    d = median_d(a.d_px)
    window = inset_window(a.centroid, d, canvas.shape) if inset else None
    n = len(instances)
    whole = _Scene([i.polygon for i in instances], [i.label for i in instances], list(range(n)),
                   list(range(n)), nm_per_px, [title] if title else [], colours, counts)
    overlay = _render(canvas, whole, d, show_ids, frame=window)
    if window is None:
        return Pictures(overlay)
    return Pictures(overlay, _render_inset(image, instances, a, window, nm_per_px, show_ids, colours), window)


def _render_inset(image, instances, a: _Shapes, window: InsetWindow, nm_per_px, show_ids, colours) -> Picture:
    import cv2

    x0, y0, x1, y1 = window.box
    crop = image[y0:y1, x0:x1]
    size = (round(window.width * window.zoom), round(window.height * window.zoom))
    # Nearest neighbour: the pixels as they are, so an outline can be judged against the real edge.
    zoomed = cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST)
    b = a.bbox
    touching = np.flatnonzero((b[:, 0] < x1) & (b[:, 2] >= x0) & (b[:, 1] < y1) & (b[:, 3] >= y0)).tolist()
    c = a.centroid
    polygons = [window.to_inset(instances[k].polygon) for k in touching]
    wanted = [p for p, k in enumerate(touching) if x0 <= c[k, 0] < x1 and y0 <= c[k, 1] < y1]
    header = [f"zoom ×{window.zoom:.3g} of x {x0}-{x1}, y {y0}-{y1} px"]
    scene = _Scene(polygons, [instances[k].label for k in touching], touching, wanted,
                   nm_per_px / window.zoom if nm_per_px else None, header, colours, None, strip=True)
    return _render(zoomed, scene, median_d(a.d_px) * window.zoom, show_ids, frame=None)


def _outside(polygons: list[np.ndarray], offset: float) -> list[np.ndarray]:
    """Each outline moved `offset` px outwards from its centroid, so it runs beside the rim, not on it."""
    from annotations.geometry import area_centroid_perimeter

    areas, centres, _ = area_centroid_perimeter(polygons)
    out = []
    for poly, area, centre in zip(polygons, areas.tolist(), centres, strict=True):
        r = math.sqrt(area / math.pi) if area > 0 else 0.0
        out.append(poly if r <= 0 else centre + (poly - centre) * (r + offset) / r)
    return out


def _render(canvas: np.ndarray, scene: _Scene, d: float, show_ids: bool | None,
            frame: InsetWindow | None) -> Picture:
    import cv2
    from PIL import Image, ImageDraw

    h, w = canvas.shape[:2]
    size = max(10, round(min(h, w) / 40))
    font = _font(size)
    pad = max(3, size // 3)
    entries = _legend_entries(scene, frame is not None)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # Room for the "ids: see the CSV" line, known only after placing them (a strip has it in its header).
    width, height = _legend_size(measure, font, size, pad, entries + ([] if scene.strip else [NOTE_LINE]))
    polygons = scene.polygons
    if scene.strip:  # the legend above the picture: the picture grows by its height
        top = int(math.ceil(height))
        canvas = np.vstack([np.zeros((top, w, 3), canvas.dtype), canvas])
        polygons = [p + [0, top] for p in polygons]
        h += top
    lw = line_width(d, canvas.shape)
    # Anti-aliasing spreads a line ~0.5 px further: 0.75 keeps the rim pixel itself untouched.
    drawn = _outside(polygons, lw / 2 + 0.75) if d < SMALL_D else polygons
    for label, colour in scene.colours.items():
        polys = [np.round(p * 2**SUBPIXEL).astype(np.int32).reshape(-1, 1, 2)
                 for p, lab in zip(drawn, scene.labels, strict=True) if lab == label]
        if polys:
            cv2.polylines(canvas, polys, True, colour, lw, cv2.LINE_AA, SUBPIXEL)
    if frame is not None:
        fx0, fy0, fx1, fy1 = frame.box
        cv2.rectangle(canvas, (fx0, fy0), (fx1 - 1, fy1 - 1), FRAME, max(1, lw))
    from annotations.geometry import bboxes

    boxes_all = bboxes(drawn)
    legend = _legend_corner(boxes_all, width, height, (w, h), scene.strip or bool(scene.nm_per_px))
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    bar = _scale_bar_box(draw, font, size, pad, w, h, scene.nm_per_px)
    hide = ([] if scene.strip else [legend]) + ([bar] if bar else [])  # drawn over the objects
    covers = hide + ([(0.0, 0.0, float(w), legend[3])] if scene.strip else [])  # no id goes there
    font_px = id_font_px(d, canvas.shape)
    ids: dict[int, Box] = {}
    if show_ids is not False:
        # Objects under the legend or the scale bar are hidden anyway: they need no id.
        wanted = [p for p in scene.wanted
                  if not any(_overlaps(tuple(boxes_all[p].tolist()), c) for c in hide)]
        if wanted:
            ids = _draw_ids(draw, scene, boxes_all, wanted, font_px, (h, w), covers, lw / 2 + 0.5,
                            show_ids is True)
    if scene.strip and entries:
        note = "ids as in the CSV" if ids else IDS_OFF_NOTE
        entries[0] = (f"{entries[0][0]}; {note}", *entries[0][1:])
    elif scene.polygons and scene.wanted and not ids:
        entries.append(NOTE_LINE)
    _draw_legend(draw, font, size, pad, entries, legend[:2])
    if scene.nm_per_px:
        _draw_scale_bar(draw, font, size, pad, w, h, scene.nm_per_px)
    return Picture(np.asarray(pil), ids, bool(ids), lw, font_px, legend, [text for text, _, _ in entries])


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _legend_corner(boxes: np.ndarray, width: float, height: float, size: tuple[int, int],
                   top_left_only: bool) -> Box:
    """The legend's box: in the top corner (or bottom left) that covers the fewest objects; top left
    on ties, and always in a strip or when the scale bar takes the bottom."""
    w, h = size
    corners = [(0.0, 0.0), (w - width, 0.0), (0.0, h - height)]
    if top_left_only:
        corners = corners[:1]

    def covered(x: float, y: float) -> int:
        if not len(boxes):
            return 0
        return int(((boxes[:, 0] < x + width) & (boxes[:, 2] > x) & (boxes[:, 1] < y + height)
                    & (boxes[:, 3] > y)).sum())

    x, y = min(corners, key=lambda c: covered(*c))
    return (max(0.0, x), max(0.0, y), max(0.0, x) + width, max(0.0, y) + height)


def _draw_ids(draw, scene: _Scene, boxes: np.ndarray, wanted: list[int], font_px: int, shape: tuple[int, int],
              reserved: list[Box], pad: float, force: bool) -> dict[int, Box]:
    """Place and draw the ids of `wanted`; {} when they do not all fit (and not forced). `boxes`: the
    outlines' boxes as drawn (beside small objects); `pad`: how far the line reaches beyond them."""
    font = _font(font_px)
    stroke = 1 if font_px < 16 else 2  # a dark rim: white digits read on bright and dark ground alike
    texts = [str(k + 1) for k in scene.index]

    def measure(text: str) -> tuple[float, float]:
        x0, y0, x1, y1 = font.getbbox(text, stroke_width=stroke)
        return float(x1 - x0), float(y1 - y0)

    sizes = text_sizes(texts, measure)
    placed = place_ids(boxes, sizes, shape, wanted=wanted, reserved=reserved, pad=pad, force=force)
    if not placed:
        return {}
    for p, box in placed.items():
        # Align the ink of the widest same-length number with the box: every digit lies inside it.
        ox, oy, _, _ = font.getbbox("8" * len(texts[p]), stroke_width=stroke)
        draw.text((box[0] - ox, box[1] - oy), texts[p], fill=WHITE, font=font, stroke_width=stroke,
                  stroke_fill=BLACK)
    return {scene.index[p]: box for p, box in placed.items()}


def _legend_entries(scene: _Scene, framed: bool) -> list[tuple[str, tuple[int, int, int], bool]]:
    """(text, colour, swatch) lines: the header, each class with its count, the inset's frame."""
    entries = [(text, WHITE, False) for text in scene.header]
    entries += [(label if scene.counts is None else f"{label} ({scene.counts[label]})", colour, True)
                for label, colour in scene.colours.items()]
    if not scene.colours:
        entries.append(("no objects", WHITE, False))
    if framed:
        entries.append(("zoomed in the next picture", FRAME, True))
    return entries


def _legend_size(draw, font, size: int, pad: int, entries) -> tuple[float, float]:
    width = max((draw.textlength(text, font=font) for text, _, _ in entries), default=0) + size + 3 * pad
    return float(width), float(pad + len(entries) * (size + pad))


def _draw_legend(draw, font, size: int, pad: int, entries, origin: tuple[float, float]) -> None:
    x0, y0 = origin
    width, height = _legend_size(draw, font, size, pad, entries)
    draw.rectangle([x0, y0, x0 + width, y0 + height], fill=BLACK)
    y = y0 + pad
    for text, colour, swatch in entries:
        if swatch:
            draw.rectangle([x0 + pad, y + size // 5, x0 + pad + size * 0.7, y + size * 0.9], fill=colour)
            draw.text((x0 + 2 * pad + size, y), text, fill=WHITE, font=font)
        else:
            draw.text((x0 + pad, y), text, fill=colour, font=font)
        y += size + pad


def _scale_bar_box(draw, font, size: int, pad: int, w: int, h: int, nm_per_px: float | None) -> Box | None:
    if not nm_per_px:
        return None
    length_nm, label = nice_scale_bar(w, nm_per_px)
    bar = length_nm / nm_per_px
    x1, y1 = w - 2 * pad, h - 2 * pad
    text_w = draw.textlength(label, font=font)
    bar_h = max(3, size // 3)
    return (min(x1 - bar, x1 - text_w) - pad, y1 - bar_h - size - 2 * pad, w - pad, h - pad)


def _draw_scale_bar(draw, font, size: int, pad: int, w: int, h: int, nm_per_px: float) -> None:
    length_nm, label = nice_scale_bar(w, nm_per_px)
    bar = length_nm / nm_per_px
    x1, y1 = w - 2 * pad, h - 2 * pad
    bar_h = max(3, size // 3)
    text_w = draw.textlength(label, font=font)
    draw.rectangle(_scale_bar_box(draw, font, size, pad, w, h, nm_per_px), fill=BLACK)
    draw.rectangle([x1 - bar, y1 - bar_h, x1, y1], fill=WHITE)
    draw.text((x1 - (bar + text_w) / 2, y1 - bar_h - size - pad), label, fill=WHITE, font=font)
