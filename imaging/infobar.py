"""Info bars and scale bars burned into flattened microscope exports (SEM TIFF/PNG/JPEG) and figure
panels, found from their pixels alone (no OCR), and the scale they give.

Three kinds of region (docs/microscope-files.md): a full-width data band at the bottom or top, dark
or white, one band or cells (ended towards the image by a straight full-width edge or rule); a flat
scale-bar box in a corner; a bar and its label drawn straight over the micrograph. They are returned
as regions to leave out of recognition and of the area density and coverage are computed over.

The scale, from every source the image offers, each with its confidence: the bar (the widest solid
horizontal rectangle of ink, measured to a fraction of a pixel; a bar split by its label measured end
to end) over its label read by Tesseract OCR (pytesseract + the tesseract-ocr program); and the field
width or pixel size the band prints (imaging/printed.py). The two are cross-checked (_weigh). Below
ASK_BELOW a caller should ask the user to confirm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from core.i18n import N_, Text
from imaging.labels import UNITS_NM, Word, find_label_words, nice, parse_label  # noqa: F401 - parse_label: API
from imaging.printed import Printed, read_printed

ASK_BELOW = 0.8  # a scale bar reading less sure than this should be confirmed by the user
MIN_SIDE = 64  # images smaller than this are not searched



@dataclass(frozen=True)
class Region:
    """[x0, x1) x [y0, y1) in image pixels, left out of recognition and statistics."""

    x0: int
    y0: int
    x1: int
    y1: int
    kind: str  # "info_bar" | "scale_box" | "scale_bar" (a bar and its label drawn over the image)

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    def as_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "kind": self.kind}

    def describe(self) -> str:
        return str(self.label())

    def label(self) -> Text:
        """'info bar x 0..640, y 480..537', for the user (in their language)."""
        where = {"x0": self.x0, "x1": self.x1, "y0": self.y0, "y1": self.y1}
        if self.kind == "info_bar":
            return N_("info bar x {x0}..{x1}, y {y0}..{y1}", **where)
        if self.kind == "scale_bar":
            return N_("scale bar and label x {x0}..{x1}, y {y0}..{y1}", **where)
        return N_("scale-bar box x {x0}..{x1}, y {y0}..{y1}", **where)

    def found_note(self) -> Text:
        """The note that says this region is left out, for the user (in their language)."""
        where = {"x0": self.x0, "x1": self.x1, "y0": self.y0, "y1": self.y1}
        if self.kind == "info_bar":
            return N_("Found an info bar x {x0}..{x1}, y {y0}..{y1}: left out of recognition and statistics.",
                      **where)
        if self.kind == "scale_bar":
            return N_("Found a scale bar drawn over the image x {x0}..{x1}, y {y0}..{y1}: left out of "
                      "recognition and statistics.", **where)
        return N_("Found a scale-bar box x {x0}..{x1}, y {y0}..{y1}: left out of recognition and statistics.",
                  **where)


@dataclass
class ScaleBar:
    nm_per_px: float
    length_nm: float
    length_px: float
    label: str  # as read and normalised, "200 nm"
    confidence: float
    bar_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    label_box: tuple[int, int, int, int] | None = None
    # what nm_per_px comes from: "bar" (label / length), "width" (the printed field width over the
    # image's width), "pixel" (the printed pixel size); `printed` is that text ("HFW 1.73 mm")
    source: str = "bar"
    printed: str | None = None
    image_width: int = 0  # the px the printed width spans
    bar_nm_per_px: float | None = None  # the bar's own reading, when another source is used

    def describe(self) -> str:
        return str(self.source_text())

    def source_text(self) -> Text:
        """'the scale bar: 200 nm = 27.2 px', for the user (in their language)."""
        if self.source == "width":
            return N_("the printed field width: {printed} over {width} px", printed=self.printed,
                      width=self.image_width)
        if self.source == "pixel":
            return N_("the printed pixel size: {printed}", printed=self.printed)
        return N_("the scale bar: {label} = {length:.1f} px", label=self.label, length=self.length_px)

    @property
    def sure(self) -> bool:
        return self.confidence >= ASK_BELOW

    def as_dict(self) -> dict:
        return {"nm_per_px": self.nm_per_px, "length_nm": self.length_nm, "length_px": self.length_px,
                "label": self.label, "confidence": self.confidence, "bar_box": list(self.bar_box),
                "label_box": list(self.label_box) if self.label_box else None, "source": self.source,
                "printed": self.printed}


@dataclass
class InfoBarResult:
    regions: list[Region] = field(default_factory=list)
    scale: ScaleBar | None = None
    bar_px: float | None = None  # the bar's length even when its label could not be read
    notes: list[Text] = field(default_factory=list)


# ------------------------------------------------------------------ pixel statistics


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    a = np.asarray(image)
    if a.ndim == 3:  # luminance (a grey image's own values); fast on 8k images, unlike a float mean
        return cv2.cvtColor(np.ascontiguousarray(a[..., :3]).astype(np.uint8, copy=False), cv2.COLOR_RGB2GRAY)
    return a.astype(np.uint8, copy=False)


def _row_flatness(grey: np.ndarray, tol: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the fraction of its pixels within +-tol of its most common value, and that value."""
    h, w = grey.shape
    counts = np.bincount((np.arange(h)[:, None] * 256 + grey).ravel(), minlength=h * 256).reshape(h, 256)
    c = np.cumsum(np.pad(counts, ((0, 0), (tol + 1, tol))), axis=1)
    window = c[:, 2 * tol + 1 :] - c[:, : -(2 * tol + 1)]
    return window.max(axis=1) / w, window.argmax(axis=1)


def _mode(values: np.ndarray, tol: int = 2) -> int:
    counts = np.bincount(values.ravel(), minlength=256)
    c = np.cumsum(np.pad(counts, (tol + 1, tol)))
    window = c[2 * tol + 1 :] - c[: -(2 * tol + 1)]
    return int(window.argmax())


def _ink(sub: np.ndarray, bg: int) -> tuple[np.ndarray, float]:
    """Pixels clearly unlike the background, and the threshold used."""
    diff = np.abs(sub.astype(np.int16) - bg)
    top = float(np.percentile(diff, 99.5)) if diff.size else 0.0
    thr = max(25.0, 0.4 * top)
    return diff > thr, thr


def _has_text(grey: np.ndarray, region: tuple[int, int, int, int]) -> bool:
    import cv2

    x0, y0, x1, y1 = region
    sub = grey[y0:y1, x0:x1]
    ink, _ = _ink(sub, _mode(sub))
    frac = ink.mean() if ink.size else 0.0
    if not 0.002 < frac < 0.6:
        return False
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    small = [s for s in stats[1:] if 2 <= s[cv2.CC_STAT_HEIGHT] <= max(4, sub.shape[0]) and s[4] >= 3]
    return len(small) >= 2


def _bands(grey: np.ndarray) -> list[Region]:
    """Full-width data bands at the bottom or top: rows of one flat grey (text rows flatter than the
    micrograph) ending, towards the image, at a straight full-width edge or rule. The band may sit a
    thin strip away from the image's edge (Zeiss Auriga): the strip goes with it."""
    h, w = grey.shape
    frac, mode = _row_flatness(grey, tol=3)
    typical = float(np.median(frac[int(0.3 * h) : int(0.7 * h) + 1]))  # the micrograph's rows
    band_row = (frac >= 0.5) | ((frac >= 0.3) & (frac >= typical + 0.1))
    # between row y and y+1 (and y+2: an edge a resized figure softened over a row): the share of
    # columns that change sharply, a straight edge across the image
    g = grey.astype(np.int16)
    step = ((np.abs(np.diff(g, axis=0)) > 20).mean(axis=1), (np.abs(g[2:] - g[:-2]) > 20).mean(axis=1))
    max_gap = max(3, h // 100)
    out = []
    for edge in ("bottom", "top"):
        order = list(range(h - 1, -1, -1)) if edge == "bottom" else list(range(h))
        found = _band_from(order, frac, mode, band_row, step, edge, max_gap, h)
        if found is None:
            continue
        y0, y1 = found
        if _has_text(grey, (0, y0, w, y1)):
            out.append(Region(0, int(y0), int(w), int(y1), "info_bar"))
    return out


def _band_from(order: list[int], frac: np.ndarray, mode: np.ndarray, band_row: np.ndarray,
               step: tuple[np.ndarray, np.ndarray], edge: str, max_gap: int,
               h: int) -> tuple[int, int] | None:
    """[y0, y1) of the band scanned from the image's edge (`order`: rows from the edge inwards)."""
    for skip in range(0, int(0.06 * h) + 1):  # the strip between the image's edge and the band
        if not band_row[order[skip]] or (skip and not _sharp(order[skip - 1], order[skip], step)):
            continue
        modes: list[int] = []
        ends, gap = [], 0  # rows where the band may end: a rule, or a sharp edge beyond
        for k in range(skip, int(0.45 * h)):
            r = order[k]
            # a row of large text is not flat, but its commonest grey is still the band's
            same_grey = bool(modes) and frac[r] >= 0.25 and abs(int(mode[r]) - _common(modes)) <= 4
            if not (band_row[r] or same_grey):
                gap += 1
                if gap > max_gap:
                    break
                continue
            gap = 0
            tall_enough = k + 1 - skip >= max(10, 0.02 * h)
            rule = frac[r] >= 0.9 and modes and abs(int(mode[r]) - _common(modes)) > 40
            beyond = order[k + 1] if k + 1 < len(order) else r
            # the band's inner edge row is one grey across the width (boxes and labels on a flat
            # micrograph cover part of it only), and the image beyond it changes along a straight line
            flat_edge = max(frac[order[j]] for j in range(max(skip, k - 2), k + 1))  # the edge's rows
            if tall_enough and (rule or (flat_edge >= 0.75 and _sharp(r, beyond, step))):
                ends.append(r)
            if frac[r] >= 0.5:
                modes.append(int(mode[r]))
        if not ends:
            return None
        inner = ends[-1]  # the farthest: data bars hold rules between their rows of cells
        return (inner, h) if edge == "bottom" else (0, inner + 1)
    return None


def _sharp(a: int, b: int, step: tuple[np.ndarray, np.ndarray]) -> bool:
    """Row a and its neighbour b differ along a straight edge across most of the image, or row a and
    the row after b do (an edge a resized figure softened over one row)."""
    one, two = step
    far = 2 * b - a
    return float(one[min(a, b)]) >= 0.4 or (0 <= min(a, far) < len(two) and float(two[min(a, far)]) >= 0.4)


def _common(values: list[int]) -> int:
    return int(np.bincount(values).argmax())


def _boxes(grey: np.ndarray, skip: list[Region]) -> list[Region]:
    """Flat rectangles holding a scale bar, burned into the micrograph (not full-width bands)."""
    import cv2

    h, w = grey.shape
    work = grey.copy()
    for r in skip:
        work[r.y0 : r.y1, r.x0 : r.x1] = 0
    kernel = np.ones((3, 3), np.uint8)
    rng = cv2.dilate(work, kernel).astype(np.int16) - cv2.erode(work, kernel)
    flat = rng <= 6  # JPEG ringing stays within this; micrograph noise does not
    for r in skip:
        flat[r.y0 : r.y1, r.x0 : r.x1] = False
    if flat.mean() > 0.6:  # a flat-background image: rectangles of background are no boxes
        return []
    values = work[flat]
    if values.size == 0:
        return []
    hist = np.bincount(values, minlength=256)
    out: list[Region] = []
    for v in np.argsort(hist)[::-1][:4]:
        if hist[v] < 0.001 * h * w:
            break
        mask = (flat & (np.abs(work.astype(np.int16) - int(v)) <= 4)).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, bw, bh, area = (int(s) for s in stats[i])
            if bw < 30 or bh < 12 or bw * bh < 0.001 * h * w or bw * bh > 0.2 * h * w or bw > 0.9 * w:
                continue
            comp = (labels[y : y + bh, x : x + bw] == i).astype(np.uint8)
            filled = _fill_holes(comp)
            if filled.sum() < 0.9 * bw * bh:
                continue
            # the box's edge pixels border the texture (not flat): take them too
            region = Region(max(0, x - 1), max(0, y - 1), min(w, x + bw + 1), min(h, y + bh + 1), "scale_box")
            if any(_overlap(region, o) for o in out):
                continue
            bar = _find_bar(grey, region)
            # a panel letter's stroke is no scale bar: a bar is wider than its label's text is high
            if bar is None or bar.x1 - bar.x0 < 1.5 * bar.text_height:
                continue
            if _has_text(grey, (x, y, x + bw, y + bh)):
                out.append(region)
    return out


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    import cv2

    h, w = mask.shape
    flood = np.pad(mask, 1).copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2).astype(np.uint8)


def _overlap(a: Region, b: Region) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


# ------------------------------------------------------------------ the bar


@dataclass
class _Bar:
    x0: int
    y0: int
    x1: int
    y1: int  # image pixels, exclusive ends
    length_px: float
    bg: int
    ink: int
    fill: float
    text_height: float
    gap: tuple[int, int] | None = None  # a bar split by its label (FEI): the label's columns


def _find_bar(grey: np.ndarray, region: Region) -> _Bar | None:
    import cv2

    sub = grey[region.y0 : region.y1, region.x0 : region.x1]
    bg = _mode(sub)
    ink_mask, thr = _ink(sub, bg)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink_mask.astype(np.uint8), connectivity=8)
    best = None
    heights = []
    segments = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(s) for s in stats[i])
        if bw >= 12 and bw <= (0.9 if region.kind == "info_bar" else 0.98) * sub.shape[1]:
            counts = (labels[y : y + bh, x : x + bw] == i).sum(axis=1)
            core = np.nonzero(counts >= 0.9 * bw)[0]  # rows inked across the bar (a touching glyph
            if len(core) and bw >= 4 * len(core):  # or stray pixel in another row is no matter)
                fill = float(counts[core].sum()) / (len(core) * bw)
                if fill >= 0.85:
                    segments.append((x, y + int(core[0]), bw, int(core[-1] - core[0] + 1), fill, i))
                    if best is None or bw > best[2]:
                        best = segments[-1]
                continue
        if 3 <= bh and area >= 4:
            heights.append(bh)
    if best is None:
        return None
    partner = _split_partner(best, segments, ink_mask)
    x, y, bw, bh, fill, i = best
    bar_pixels = labels == i
    values = sub[y : y + bh, x : x + bw][bar_pixels[y : y + bh, x : x + bw]]
    ink = int(np.percentile(values, 90 if values.mean() > bg else 10))  # full-coverage pixels
    if abs(ink - bg) < thr:
        return None
    # interior rows: fully inked across the bar (the anti-aliased top and bottom rows left out)
    level = np.clip((sub[y : y + bh, x : x + bw].astype(np.float64) - bg) / (ink - bg), 0, 1)
    rows = [y + r for r in range(bh) if level[r].mean() >= 0.9]
    if len(rows) >= 3:
        rows = rows[1:-1]
    if not rows:
        rows = [y + int(np.argmax(level.mean(axis=1)))]
    lo, hi = max(0, x - 3), min(sub.shape[1], x + bw + 3)
    cover = np.clip((sub[rows, lo:hi].astype(np.float64) - bg) / (ink - bg), 0.0, 1.0).mean(axis=0)
    start, end = x - lo, x - lo + bw  # the thresholded bar, then its partly covered ends
    while start > 0 and x - lo - start < 2 and 0.02 < cover[start - 1] < 0.98:
        start -= 1
    while end < len(cover) and end - (x - lo + bw) < 2 and 0.02 < cover[end] < 0.98:
        end += 1
    length = float(cover[start:end].sum())
    text_h = float(np.median(heights)) if heights else max(8.0, 1.5 * bh)
    if partner is not None and min(best[2], partner[2]) < 2 * text_h:  # strokes of a text line
        partner = None
    if partner is not None:  # the outer span of both halves, the label's columns between them
        left, right = sorted([best, partner])
        gap = (region.x0 + left[0] + left[2], region.x0 + right[0])
        return _Bar(region.x0 + left[0], region.y0 + y, region.x0 + right[0] + right[2], region.y0 + y + bh,
                    float(right[0] + right[2] - left[0]), bg, ink, fill, text_h, gap)
    return _Bar(region.x0 + x, region.y0 + y, region.x0 + x + bw, region.y0 + y + bh, length, bg, ink,
                fill, text_h)


def _split_partner(best: tuple, segments: list[tuple], ink: np.ndarray) -> tuple | None:
    """The other half of a bar drawn as |<-- 500 µm -->|: a segment on the same rows, of about the
    same length, with ink (the label) in the gap between them."""
    x, y, bw, bh = best[:4]
    for other in segments:
        ox, oy, ow, oh = other[:4]
        if other is best or abs(oy - y) > 1 or abs(oh - bh) > 1 or not 0.6 <= ow / bw <= 1 / 0.6:
            continue
        gx0, gx1 = (x + bw, ox) if ox > x else (ox + ow, x)
        if not 0 < gx1 - gx0 <= 1.5 * max(bw, ow):
            continue
        if ink[max(0, y - 2 * bh) : y + 3 * bh, gx0:gx1].any(axis=0).mean() > 0.3:
            return other
    return None


# ------------------------------------------------------------------ the label (OCR)


def tesseract_available() -> bool:
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception:  # noqa: BLE001 - not installed, not on PATH, or the wrapper missing
        return False
    return True


def _label_lines(grey: np.ndarray, bar: _Bar, region: Region) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Boxes (side, x0, y0, x1, y1) of the text lines right above, below, left and right of the bar,
    nearest first: glyphs (ink components) chained with word-sized gaps."""
    glyphs = _glyphs_off_bar(grey, bar, region)
    bar_box = (bar.x0 - region.x0, bar.y0 - region.y0, bar.x1 - region.x0, bar.y1 - region.y0)
    found = []
    if bar.gap is not None:  # the label between the halves of the bar
        gx0, gx1 = bar.gap[0] - region.x0, bar.gap[1] - region.x0
        inside = [g for g in glyphs if g[0] >= gx0 and g[0] + g[2] <= gx1
                  and g[1] < bar_box[3] + bar.text_height and g[1] + g[3] > bar_box[1] - bar.text_height]
        if inside:
            box = _chain(inside, [], 0)
            found.append((-1, "inside", (box[0] + region.x0, box[1] + region.y0, box[2] + region.x0,
                                         box[3] + region.y0)))
    th = bar.text_height
    for side, seeds in _glyphs_beside(glyphs, bar_box, th).items():
        if not seeds:
            continue
        line, dist = _nearest_line(side, seeds, bar_box)
        # a label above or below stays over the bar's span: the next field of a data bar does not join
        pool = glyphs if side in ("left", "right") else [
            g for g in glyphs if g[0] >= bar_box[0] - 2 * th and g[0] + g[2] <= bar_box[2] + 2 * th]
        box = _chain(line, pool, 1.3 * th)
        if (box[3] - box[1]) >= 3:
            found.append((dist, side, (box[0] + region.x0, box[1] + region.y0, box[2] + region.x0,
                                       box[3] + region.y0)))
    found.sort()
    return [(side, box) for _, side, box in found]


def _glyphs_off_bar(grey: np.ndarray, bar: _Bar, region: Region) -> list[tuple[int, int, int, int]]:
    """The ink components of `region` (x, y, w, h in the region, 2 px or more), the bar itself erased."""
    import cv2

    sub = grey[region.y0 : region.y1, region.x0 : region.x1]
    if region.kind == "scale_bar":  # over the micrograph: ink is what lies beyond bg towards the bar's grey
        ink = sub > bar.bg if bar.ink > bar.bg else sub < bar.bg
    else:
        ink, _ = _ink(sub, bar.bg)
    bx0, by0, bx1, by1 = bar.x0 - region.x0, bar.y0 - region.y0, bar.x1 - region.x0, bar.y1 - region.y0
    label = ink[:, bar.gap[0] - region.x0 : bar.gap[1] - region.x0].copy() if bar.gap else None
    ink[max(0, by0 - 1) : by1 + 1, max(0, bx0 - 2) : bx1 + 2] = False
    if bar.gap:  # the label between the halves stays whole
        ink[:, bar.gap[0] - region.x0 : bar.gap[1] - region.x0] = label
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    # frames, cell borders, rules and logos are no glyphs: chained, they made the whole band one "line"
    tall, wide = 2.5 * bar.text_height, max(0.5 * sub.shape[1], 8 * bar.text_height)
    glyphs = [tuple(int(v) for v in s[:4]) for s in stats[1:] if s[4] >= 2 and s[3] <= tall and s[2] <= wide]
    return [g for g in glyphs if not _end_tick(g, (bx0, by0, bx1, by1))]


def _end_tick(g: tuple[int, int, int, int], bar: tuple[int, int, int, int]) -> bool:
    """A stroke at an end of the bar, touching it (|---| caps): no glyph of the label."""
    x, y, w, h = g
    bx0, by0, bx1, by1 = bar
    touches = y <= by1 + 1 and y + h >= by0 - 1
    at_end = any(x - 3 <= end <= x + w + 3 for end in (bx0, bx1))
    return touches and at_end and w <= 6


def _glyphs_beside(glyphs: list, bar_box: tuple[int, int, int, int], th: float) -> dict[str, list]:
    """Per side of the bar, the glyphs that could start its label: within ~3 text heights above or
    below over the bar's span, or ~2.5 to the right or left at the bar's height."""
    bx0, by0, bx1, by1 = bar_box
    cy = (by0 + by1) / 2
    return {
        "above": [g for g in glyphs if by0 - 2.8 * th <= g[1] + g[3] <= by0 + 1
                  and g[0] < bx1 + th and g[0] + g[2] > bx0 - th],
        "below": [g for g in glyphs if by1 - 1 <= g[1] <= by1 + 2.8 * th
                  and g[0] < bx1 + th and g[0] + g[2] > bx0 - th],
        "right": [g for g in glyphs if bx1 <= g[0] <= bx1 + 2.5 * th and g[1] < cy + th
                  and g[1] + g[3] > cy - th],
        "left": [g for g in glyphs if bx0 - 2.5 * th <= g[0] + g[2] <= bx0 and g[1] < cy + th
                 and g[1] + g[3] > cy - th],
    }


def _nearest_line(side: str, seeds: list, bar_box: tuple[int, int, int, int]) -> tuple[list, int]:
    """The glyphs of the label line nearest the bar on `side`, and its distance from the bar (px)."""
    bx0, by0, bx1, by1 = bar_box
    if side in ("above", "below"):
        # the line nearest the bar, then the glyphs of that line over the bar's span
        key = (lambda g: by0 - (g[1] + g[3])) if side == "above" else (lambda g: g[1] - by1)
        nearest = min(seeds, key=key)
        line = [g for g in seeds if g[1] < nearest[1] + nearest[3] and g[1] + g[3] > nearest[1]]
        return line, max(0, key(nearest))
    key = (lambda g: g[0] - bx1) if side == "right" else (lambda g: bx0 - (g[0] + g[2]))
    line = [min(seeds, key=key)]
    return line, max(0, key(line[0]))


def _chain(seed: list, pool: list, gap: float) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) of `seed` grown by every glyph of `pool` on the same line and less
    than `gap` from it, until nothing more joins."""
    x0 = min(g[0] for g in seed)
    x1 = max(g[0] + g[2] for g in seed)
    y0 = min(g[1] for g in seed)
    y1 = max(g[1] + g[3] for g in seed)
    grown = True
    while grown:
        grown = False
        for g in pool:
            gx0, gy0, gx1, gy1 = g[0], g[1], g[0] + g[2], g[1] + g[3]
            if gx0 >= x0 and gx1 <= x1 and gy0 >= y0 and gy1 <= y1:
                continue
            same_line = gy0 < y1 and gy1 > y0
            near = gx0 - x1 < gap and x0 - gx1 < gap
            if same_line and near:
                x0, x1, y0, y1 = min(x0, gx0), max(x1, gx1), min(y0, gy0), max(y1, gy1)
                grown = True
    return x0, y0, x1, y1


def _line_page(grey: np.ndarray, box: tuple[int, int, int, int], bar: _Bar) -> np.ndarray:
    """One text line as black on white, ~36 px high (what suits Tesseract)."""
    import cv2

    x0, y0, x1, y1 = box
    crop = grey[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1].astype(np.float64)
    level = np.clip((crop - bar.bg) / (bar.ink - bar.bg), 0, 1)
    page = np.rint(255 * (1 - level)).astype(np.uint8)
    factor = float(np.clip(36.0 / max(y1 - y0, 1), 1.0, 6.0))
    if factor > 1.01:
        page = cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return page


def _band_page(grey: np.ndarray, region: Region, text_height: float) -> np.ndarray:
    """A whole data band as dark text on white for Tesseract, its frames and cell rules taken out
    (read for the printed field width; its text may be light on dark or dark on light)."""
    import cv2

    sub = grey[region.y0 : region.y1, region.x0 : region.x1]
    bg = _mode(sub)
    ink_value = 0 if bg > 127 else 255
    level = np.clip((sub.astype(np.float64) - bg) / (ink_value - bg), 0, 1)
    ink, _ = _ink(sub, bg)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    for i in range(1, n):
        if stats[i][3] > 2.5 * text_height or stats[i][2] > 8 * text_height:
            level[labels == i] = 0
    page = np.rint(255 * (1 - level)).astype(np.uint8)
    factor = float(np.clip(30.0 / max(text_height, 1.0), 1.0, 4.0))
    if factor > 1.01:
        page = cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return page


def _weigh(bar: ScaleBar | None, printed: Printed | None, width: int,
           box: tuple[int, int, int, int]) -> tuple[ScaleBar | None, list[Text]]:
    """The scale from the bar and the printed value, each with its own confidence, cross-checked:
    agreeing (within 8 %: instruments round their bars by up to 6 %), the printed value is used, more
    precise than a bar; disagreeing, the printed width is used but must be confirmed, while a printed
    pixel size gives way to the bar (it may describe the acquisition before downsampling)."""
    if printed is None:
        return bar, []
    kind = printed.kind
    if bar is None:  # nothing to check it against: OCR'd digits alone are asked about
        sure = min(ASK_BELOW - 0.01, 0.5 + 0.4 * printed.confidence)
        return ScaleBar(printed.nm_per_px, printed.nm_per_px * width, float(width), printed.text,
                        round(sure, 3), box, None, kind, printed.text, width), []
    off = abs(bar.nm_per_px / printed.nm_per_px - 1)
    for power in (-3, -2, -1, 1, 2, 3):  # a lost or misplaced decimal point: the digits still agree
        if off > 0.08 and abs(bar.nm_per_px / printed.shifted(power).nm_per_px - 1) <= 0.08:
            printed = printed.shifted(power)
            off = abs(bar.nm_per_px / printed.nm_per_px - 1)
    values = {"bar": bar.nm_per_px, "label": bar.label, "length": bar.length_px, "printed": printed.nm_per_px,
              "printed_text": printed.text}
    if off <= 0.08:
        notes = [] if off < 0.005 else [N_(
            "The scale bar says {bar:.4g} nm/px ({label} = {length:.1f} px), the printed {printed_text} "
            "{printed:.4g} nm/px: using the printed value.", **values)]
        sure = max(bar.confidence, printed.confidence, 0.9)  # two sources agree
        return replace(bar, nm_per_px=printed.nm_per_px, confidence=round(sure, 3), source=kind,
                       printed=printed.text, image_width=width, bar_nm_per_px=bar.nm_per_px), notes
    notes = [N_("The scale bar says {bar:.4g} nm/px ({label} = {length:.1f} px) but the printed "
                "{printed_text} gives {printed:.4g} nm/px: they disagree, please check the scale.", **values)]
    if kind == "pixel":
        return replace(bar, confidence=min(bar.confidence, 0.6)), notes
    return replace(bar, nm_per_px=printed.nm_per_px, confidence=0.5, source=kind, printed=printed.text,
                   image_width=width, bar_nm_per_px=bar.nm_per_px), notes


@contextmanager
def _tesseract_single_threaded() -> Iterator[None]:
    """OMP_THREAD_LIMIT=1 for the Tesseract child only (small pages: its threads only contend).

    pytesseract hands the child os.environ, so the variable is set for the call and taken out
    again: left behind, it reached every process started later (a worker's pool processes), whose
    OpenMP then gave oneDNN one thread where it had planned two, and training hung in its barrier.
    An operator's own OMP_THREAD_LIMIT stays as it is."""
    if "OMP_THREAD_LIMIT" in os.environ:
        yield
        return
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OMP_THREAD_LIMIT", None)


def ocr_lines(lines: list[np.ndarray], config: str = "--psm 6") -> list[list[Word]]:
    """The words of each text-line image (boxes in that image), in reading order, by ONE Tesseract run
    over them stacked (starting Tesseract and loading its model costs far more than reading a line)."""
    import pytesseract

    if not lines:
        return []
    gap = 24
    width = max(line.shape[1] for line in lines) + 2 * gap
    spans, rows, y = [], [np.full((gap, width), 255, np.uint8)], gap
    for line in lines:
        h, w = line.shape
        block = np.full((h, width), 255, np.uint8)
        block[:, gap : gap + w] = line
        rows += [block, np.full((gap, width), 255, np.uint8)]
        spans.append((y, y + h))
        y += h + gap
    page = np.vstack(rows)
    with _tesseract_single_threaded():
        data = pytesseract.image_to_data(page, config=config, output_type=pytesseract.Output.DICT)
    words: list[list[Word]] = [[] for _ in lines]
    for k, text in enumerate(data["text"]):
        text = (text or "").strip()
        if not text:
            continue
        top, height = data["top"][k], data["height"][k]
        for i, (a, b) in enumerate(spans):
            if a - gap / 2 <= top + height / 2 < b + gap / 2:
                words[i].append(Word(text, float(data["conf"][k]) / 100.0, data["left"][k] - gap, top - a,
                                     data["width"][k], height))
                break
    # Tesseract's order: block, line, word (a page of several lines keeps its lines apart)
    return words


def _scale_from(bar: _Bar, candidates: list[tuple[tuple[int, int, int, int], list]]) -> ScaleBar | None:
    """The scale from the first candidate line (nearest the bar first) that holds a label with a
    value bars are labelled with, else the first that holds one at all. Its label_box is the label's
    own words, in image pixels (to read them again on their own)."""
    labelled = [(box, got) for box, words in candidates
                if (got := find_label_words(words)) is not None and got[0][0] > 0]
    for box, (parsed, group) in sorted(labelled, key=lambda bp: not nice(bp[1][0][0]))[:1]:  # stable
        value, unit, exact, conf = parsed
        if bar.length_px <= 0:
            continue
        length_nm = value * UNITS_NM[unit]
        nm = length_nm / bar.length_px
        # the digits are what OCR may get wrong; scale bars are labelled 1, 2, 2.5, 5 ... x 10^k
        confidence = 0.6 + 0.4 * max(0.0, min(1.0, conf))
        confidence *= 1.0 if nice(value) else 0.6
        confidence *= 1.0 if exact else 0.95  # the micro sign read as u, p, y ...
        confidence *= 1.0 if bar.fill >= 0.95 else 0.9
        confidence *= 1.0 if bar.length_px >= 20 else 0.8  # a short bar: each pixel is > 5 %
        confidence *= 1.0 if 0.005 <= nm <= 5000 else 0.3
        label = f"{value:g} {unit}"
        return ScaleBar(nm, length_nm, bar.length_px, label, round(confidence, 3),
                        (bar.x0, bar.y0, bar.x1, bar.y1), _words_box(box, group))
    return None


def _words_box(line: tuple[int, int, int, int], group: list[Word]) -> tuple[int, int, int, int]:
    """The box of some of a line's words in image pixels (their boxes are in _line_page's page)."""
    x0, y0, x1, y1 = line
    if not group or not any(w.w for w in group):
        return line
    factor = float(np.clip(36.0 / max(y1 - y0, 1), 1.0, 6.0))
    if factor <= 1.01:
        factor = 1.0
    left = min(w.x for w in group) / factor
    right = max(w.x + w.w for w in group) / factor
    return (max(x0, int(x0 - 1 + left) - 2), y0, min(x1, int(np.ceil(x0 - 1 + right)) + 2), y1)


def _read_again(prepared: list, scales: dict[int, ScaleBar]) -> None:
    """Unsure bar readings: their label's own words read once more on their own, as one line (in a
    long line of fields Tesseract is less sure of each word). The same value read again makes the
    reading surer; another, less sure. Restricting the characters (tessedit_char_whitelist) made
    Tesseract's LSTM model read "100 um" as "100um" at confidence 0 and "1 um" as "1m": not used."""
    todo = [(k, s) for k, s in scales.items() if s.confidence < ASK_BELOW and s.label_box is not None]
    if not todo:
        return
    pages = [_line_page(prepared[k][1], s.label_box, prepared[k][2]) for k, s in todo]
    again = ocr_lines(pages, config="--psm 7")
    for (k, first), words in zip(todo, again, strict=True):
        second = _scale_from(prepared[k][2], [(first.label_box, words)])
        if second is None:
            continue
        if second.label == first.label:
            scales[k] = replace(first, confidence=max(first.confidence, second.confidence))
        else:
            scales[k] = replace(first, confidence=round(min(first.confidence, 0.5), 3))


# ------------------------------------------------------------------ entry points


def _prepare(image: np.ndarray) -> tuple[InfoBarResult, np.ndarray | None, _Bar | None, list]:
    """Regions, the bar and its candidate label lines (nearest first) of one image; no OCR yet."""
    grey = _grey(image)
    h, w = grey.shape
    result = InfoBarResult()
    if h < MIN_SIDE or w < MIN_SIDE:
        return result, None, None, []
    regions = _bands(grey)
    regions += _boxes(grey, regions)
    result.regions = regions
    result.notes.extend(region.found_note() for region in regions)
    bars = [(b, r) for r in regions if (b := _find_bar(grey, r)) is not None]
    if not bars:
        found = _overlay_bar(grey, regions)
        if found is None:
            return result, grey, None, []
        bar, region, boxes = found
        result.regions.append(_around(bar, boxes, grey.shape))
        result.notes.append(result.regions[-1].found_note())
        result.bar_px = bar.length_px
        return result, grey, bar, boxes
    bar, region = max(bars, key=lambda br: br[0].x1 - br[0].x0)
    result.bar_px = bar.length_px
    boxes = [box for _, box in _label_lines(grey, bar, region)[:4]]
    return result, grey, bar, boxes


# ------------------------------------------------------------------ a bar drawn over the image


def _overlay_bar(grey: np.ndarray, skip: list[Region]) -> tuple[_Bar, Region, list] | None:
    """The longest scale bar drawn straight over the micrograph (journal figures, tools): a thin,
    solid, near-white or near-black horizontal bar in the outer third of the image, with text of its
    grey beside it. Returns the bar, the window searched for its label and the label lines."""

    h, w = grey.shape
    found = []
    third = h // 3
    for top in (0, h - third):  # bars sit in a corner or along an edge: the outer thirds only
        part = grey[top : top + third]
        for ink_value, mask in ((255, part >= 215), (0, part <= 40)):
            for bw, x, y, bh in _bar_runs(grey, mask, top, ink_value):
                if not any(r.x0 <= x < r.x1 and r.y0 <= y + top < r.y1 for r in skip):
                    found.append((bw, x, y + top, bh, ink_value))
    for bw, x, y, bh, ink_value in sorted(found, reverse=True):
        th = max(8.0, 0.035 * h)
        region = Region(max(0, int(x - 3 * th)), max(0, int(y - 4 * th)), min(w, int(x + bw + 3 * th)),
                        min(h, int(y + bh + 4 * th)), "scale_bar")
        edge = 110 if ink_value == 255 else -110  # the page: pixels nearer the bar's grey than this are ink
        bar = _Bar(x, y, x + bw, y + bh, float(bw), ink_value - edge, ink_value, 1.0, th)
        glyphs = _glyphs_off_bar(grey, bar, region)
        sizes = [g[3] for g in glyphs if 5 <= g[3] <= 0.12 * h and g[2] <= 3 * g[3]]
        if len(sizes) < 2:
            continue
        bar.text_height = th = float(np.median(sizes))
        if bw < 1.5 * th:  # a bar is longer than its label's text is high
            continue
        lines = _label_lines(grey, bar, region)
        near = [box for side, box in lines if _label_like(box, (x, y, x + bw, y + bh), th)]
        if near:
            return bar, region, near[:4]
    return None


def _bar_runs(grey: np.ndarray, mask: np.ndarray, top: int,
              ink_value: int) -> list[tuple[int, int, int, int]]:
    """(width, x, y in `mask`, height) of the thin solid runs of `mask` (one grey of the image's rows
    `top`..) that look drawn: long, square-ended, most of their connected shape, one grey
    unlike the rows around them, their grey stopping above and below them."""
    import cv2

    h, w = grey.shape
    run = max(12, int(0.04 * w))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, run), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    out = []
    for x, y, bw, bh, area in (tuple(int(v) for v in st) for st in stats[1:]):
        if bh > max(4, 0.03 * h) or bw < 7 * bh or bw > 0.6 * w or area < 0.9 * bw * bh:
            continue
        if not _square_ends(opened[y : y + bh, x : x + bw]):
            continue
        # a bar, not the straight edge of a bright (dark) area: its grey stops above and below it
        above = y >= 2 and mask[y - 2, x : x + bw].mean() > 0.5
        below = y + bh + 1 < mask.shape[0] and mask[y + bh + 1, x : x + bw].mean() > 0.5
        if above or below or not _stands_out(grey, (x, y + top, bw, bh), ink_value):
            continue
        # a letter's stroke (E, A, 2), a streak or a particle's edge: the bar is most of its shape
        # (its shape looked at around the bar only: one that runs out of that window is no bar)
        m = max(3 * bh, 8)
        wx0, wy0 = max(0, x - bw // 2), max(0, y - m)
        window = mask[wy0 : y + bh + m, wx0 : x + bw + bw // 2].astype(np.uint8)
        _, labels, shapes, _ = cv2.connectedComponentsWithStats(window, connectivity=8)
        _, _, cw, ch, c_area = shapes[labels[y - wy0, x - wx0 + bw // 2]]
        if cw < 3 * ch or c_area - area > 0.5 * area:
            continue
        out.append((bw, x, y, bh))
    return out


def _square_ends(rows: np.ndarray) -> bool:
    """Every row of a drawn bar starts and ends in the same column (a rod's ends are round)."""
    filled = rows.astype(bool)
    starts = filled.argmax(axis=1)
    ends = filled.shape[1] - filled[:, ::-1].argmax(axis=1)
    return int(np.ptp(starts)) <= 2 and int(np.ptp(ends)) <= 2


def _stands_out(grey: np.ndarray, box: tuple[int, int, int, int], ink_value: int) -> bool:
    """A drawn bar is one grey (a highlight on a particle is not) and unlike the pixels just above and
    below it (a bright ridge fades into its surroundings)."""
    x, y, bw, bh = box
    h = grey.shape[0]
    inside = grey[y : y + bh, x : x + bw].astype(np.float64)
    rows = [y - 3, y + bh + 2]
    if rows[0] < 0 or rows[1] >= h:  # a line along the image's edge: a frame, not a bar
        return False
    if np.percentile(inside, 90) - np.percentile(inside, 10) > 30:  # its ends may be soft
        return False
    around = grey[rows, x : x + bw].astype(np.float64)
    # one flat side and one textured: the border of a box or inset, not a bar drawn over the image
    flat = [float(np.percentile(r, 90) - np.percentile(r, 10)) <= 10 for r in around]
    if flat[0] != flat[1]:
        return False
    return float(np.abs(around - ink_value).mean()) >= 70


def _label_like(box: tuple[int, int, int, int], bar: tuple[int, int, int, int], th: float) -> bool:
    """A text line that can be a bar's label: about the text height high, wider than high, and close."""
    x0, y0, x1, y1 = box
    bx0, by0, bx1, by1 = bar
    dy = max(by0 - y1, y0 - by1, 0)
    dx = max(bx0 - x1, x0 - bx1, 0)
    high = y1 - y0
    return 5 <= high <= 4 * th and x1 - x0 >= 1.2 * high and max(dx, dy) <= 2 * max(th, high)


def _around(bar: _Bar, lines: list[tuple[int, int, int, int]], shape: tuple[int, ...]) -> Region:
    """The region left out for a bar drawn over the image: the bar and the lines beside it that may be
    its label (all within a few text heights), 3 px around."""
    h, w = shape[:2]
    boxes = [(bar.x0, bar.y0, bar.x1, bar.y1), *lines]
    return Region(max(0, min(b[0] for b in boxes) - 3), max(0, min(b[1] for b in boxes) - 3),
                  min(w, max(b[2] for b in boxes) + 3), min(h, max(b[3] for b in boxes) + 3), "scale_bar")


def analyse_many(images: list[np.ndarray], *, read_label: bool = True) -> list[InfoBarResult]:
    """analyse() over several images with one Tesseract run for all their labels."""
    prepared = [_prepare(image) for image in images]
    ocr = read_label and any(bar is not None for _, _, bar, _ in prepared) and tesseract_available()
    pages, owners, bands, band_owners = [], [], [], []
    for k, (result, grey, bar, boxes) in enumerate(prepared):
        if ocr and bar is not None:
            for box in boxes:
                pages.append(_line_page(grey, box, bar))
                owners.append((k, box))
        band = next((r for r in result.regions if r.kind == "info_bar"), None)
        if ocr and band is not None:  # the printed field width, whether or not a bar was found
            bands.append(_band_page(grey, band, bar.text_height if bar is not None else 12.0))
            band_owners.append(k)
    read: dict[int, list] = {}
    for (k, box), words in zip(owners, ocr_lines(pages), strict=True):
        read.setdefault(k, []).append((box, words))
    # a run of its own: wide many-line pages stacked with the label lines changed how small labels read
    printed = {k: read_printed(words, prepared[k][1].shape[1])
               for k, words in zip(band_owners, ocr_lines(bands), strict=True)}
    scales = {k: got for k, (_, _, bar, _) in enumerate(prepared)
              if bar is not None and ocr and (got := _scale_from(bar, read.get(k, []))) is not None}
    _read_again(prepared, scales)
    out = []
    for k, (result, grey, bar, _) in enumerate(prepared):
        if bar is not None and read_label and not ocr:
            result.notes.append(N_(
                "A scale bar of {length:.1f} px was found, but its label cannot be read here: the "
                "tesseract-ocr program is not installed.", length=bar.length_px,
            ))
        elif read_label and ocr:
            scale = scales.get(k)
            if bar is not None and scale is None:
                result.notes.append(N_(
                    "A scale bar of {length:.1f} px was found, but its label was not read.",
                    length=bar.length_px,
                ))
            band = next((r for r in result.regions if r.kind == "info_bar"), None)
            box = (band.x0, band.y0, band.x1, band.y1) if band is not None else (0, 0, 0, 0)
            result.scale, notes = _weigh(scale, printed.get(k), grey.shape[1], box)
            result.notes.extend(notes)
        out.append(result)
    return out


def analyse(image: np.ndarray, *, read_label: bool = True) -> InfoBarResult:
    """Info bar / scale-bar box regions of an image and the scale its bar gives."""
    return analyse_many([image], read_label=read_label)[0]


def analysed_area(shape: tuple[int, ...], regions) -> float:
    """The image area outside the regions (their union), in px^2."""
    h, w = int(shape[0]), int(shape[1])
    boxes = [(max(0, r.x0), max(0, r.y0), min(w, r.x1), min(h, r.y1)) for r in regions or []]
    boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    if not boxes:
        return float(h * w)
    xs = sorted({b[0] for b in boxes} | {b[2] for b in boxes})
    ys = sorted({b[1] for b in boxes} | {b[3] for b in boxes})
    covered = 0
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            cx, cy = xs[i], ys[j]
            if any(b[0] <= cx < b[2] and b[1] <= cy < b[3] for b in boxes):
                covered += (xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j])
    return float(h * w - covered)
