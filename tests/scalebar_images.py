"""SEM-like images drawn in code, with an info bar or a scale-bar box and a known scale.

Used by tests/test_infobar.py and bench/bench_scalebar.py. Bars and text are drawn at 4x and
area-averaged down, so the bar's ends are anti-aliased and its length is a fraction of a pixel, as in
a real export; the true nm/px is the label's length over that drawn length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SS = 4  # supersampling
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf")


def font_path(name: str) -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


@dataclass
class Case:
    font: str = "DejaVuSans.ttf"
    size: int = 16  # font size in image px
    dark: bool = True  # light ink on a dark bar
    layout: str = "above"  # label "above" the bar, "beside" it, or a "box" burned into the image
    value: float = 200
    unit: str = "nm"  # "nm" | "µm" | "um"
    nm_per_px: float = 7.34  # wanted; the drawn bar is rounded to 1/SS px
    width: int = 640
    height: int = 480  # micrograph height (the info bar is added below it)
    top: bool = False  # info bar at the top instead of the bottom
    seed: int = 0
    jpeg: int | None = None  # JPEG quality, None = lossless
    hfw: bool = False  # the data bar prints its field width (the true scale x width) as its 4th field

    @property
    def label(self) -> str:
        return f"{self.value:g} {self.unit}" if self.seed % 3 else f"{self.value:g}{self.unit}"


@dataclass
class Drawn:
    image: np.ndarray  # (H, W, 3) uint8
    nm_per_px: float  # true
    bar_px: float  # true drawn length
    excluded: tuple[int, int, int, int]  # x0, y0, x1, y1 of the info bar / box
    micrograph: tuple[int, int, int, int]  # where the micrograph is


def micrograph(height: int, width: int, seed: int = 0, discs: int = 25) -> np.ndarray:
    """Grey SEM-like texture: smooth background, noise, bright round particles."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1, (height // 8 + 2, width // 8 + 2)).astype(np.float32)
    base = cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 1.5), (width, height), interpolation=cv2.INTER_CUBIC)
    base = 60 + 25 * base / (np.abs(base).max() + 1e-9)
    for _ in range(discs):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 18)
        x0, x1 = max(0, int(cx - 2 * r)), min(width, int(cx + 2 * r) + 1)
        y0, y1 = max(0, int(cy - 2 * r)), min(height, int(cy + 2 * r) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        base[y0:y1, x0:x1] += 110 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r)) ** 2)
    base += rng.normal(0, 6, (height, width)).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def _text(draw, xy, text, font, fill, anchor="ls"):
    draw.text(xy, text, font=font, fill=fill, anchor=anchor)


def draw_case(case: Case) -> Drawn:
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(case.seed + 1000)
    font = ImageFont.truetype(font_path(case.font), case.size * SS)
    bg, ink = (20, 235) if case.dark else (235, 20)
    length_nm = case.value * (1000.0 if case.unit in ("µm", "um") else 1.0)
    bar_ss = int(round(length_nm / case.nm_per_px * SS))
    bar_px = bar_ss / SS
    bar_h = max(3, round(case.size / 4)) * SS
    w = case.width
    label_w = font.getlength(case.label)
    if case.layout == "box":
        box_w = int(max(bar_ss, label_w) + 2 * case.size * SS) // SS * SS
        box_h = int(bar_h + 2.6 * case.size * SS) // SS * SS
    else:
        box_w, box_h = w * SS, int(3.6 * case.size * SS) // SS * SS  # whole pixels: exact area means
    canvas = Image.new("L", (box_w, box_h), bg)
    draw = ImageDraw.Draw(canvas)
    size = case.size * SS
    if case.layout == "box":
        bx = int((box_w - bar_ss) / 2) + int(rng.integers(0, SS))
        by = box_h - int(0.7 * size) - bar_h
        draw.rectangle([bx, by, bx + bar_ss - 1, by + bar_h - 1], fill=ink)
        _text(draw, (box_w / 2, by - 0.45 * size), case.label, font, ink, anchor="ms")
    else:
        # the usual fields on the left, the scale bar on the right
        # the field width as an instrument prints it: the true scale over the image's width, 3 digits
        hfw = length_nm * SS / bar_ss * w / 1000.0
        fields = ["HV 15.00 kV", "WD 5.2 mm", "mag 50 000 x", f"HFW {hfw:.3g} µm" if case.hfw else "det TLD"]
        need = bar_ss + (label_w + 2 * size if case.layout == "beside" else size)
        two_columns = font.getlength("mag 50 000 x") + font.getlength("HV 15.00 kV") + 3 * size
        if two_columns + need > box_w:  # no room for a second column of fields beside the bar
            fields = fields[:2]
        x = 0.5 * size
        for k, f in enumerate(fields):
            row = 1.4 * size if k % 2 == 0 else 2.9 * size
            _text(draw, (x, row), f, font, ink)
            if k % 2:
                x += font.getlength(max(fields[k - 1 : k + 1], key=len)) + size
        room = box_w - x - size
        if case.layout == "above":
            bx = int(x + max(0, (room - bar_ss) / 2)) + int(rng.integers(0, SS))
            bx = min(bx, int(box_w - bar_ss - 0.5 * size))
            by = int(2.3 * size)
            draw.rectangle([bx, by, bx + bar_ss - 1, by + bar_h - 1], fill=ink)
            _text(draw, (bx + bar_ss / 2, by - 0.35 * size), case.label, font, ink, anchor="ms")
        else:  # beside: the label right of the bar, on its line
            bx = int(x + max(0, (room - bar_ss - label_w - 0.6 * size) / 2)) + int(rng.integers(0, SS))
            bx = min(bx, int(box_w - bar_ss - label_w - 1.2 * size))
            by = int(1.9 * size)
            draw.rectangle([bx, by, bx + bar_ss - 1, by + bar_h - 1], fill=ink)
            _text(draw, (bx + bar_ss + 0.5 * size, by + bar_h / 2), case.label, font, ink, anchor="lm")
    small = cv2.resize(np.asarray(canvas), (box_w // SS, box_h // SS), interpolation=cv2.INTER_AREA)
    micro = micrograph(case.height, w, case.seed)
    if case.layout == "box":
        sh, sw = small.shape
        x0, y0 = w - sw - 12, case.height - sh - 12
        micro[y0 : y0 + sh, x0 : x0 + sw] = small
        grey, excluded, where = micro, (x0, y0, x0 + sw, y0 + sh), (0, 0, w, case.height)
    elif case.top:
        grey = np.vstack([small, micro])
        excluded, where = (0, 0, w, small.shape[0]), (0, small.shape[0], w, grey.shape[0])
    else:
        grey = np.vstack([micro, small])
        excluded, where = (0, case.height, w, grey.shape[0]), (0, 0, w, case.height)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if case.jpeg:
        ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, case.jpeg])
        rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return Drawn(rgb, length_nm / bar_px, bar_px, excluded, where)


def cases(n_fonts: int = 5) -> list[Case]:
    """The benchmark's set: fonts x sizes x polarity x layout x unit."""
    out = []
    seed = 0
    values = [(200, "nm", 7.34), (500, "nm", 3.1), (1, "µm", 12.5), (2, "µm", 21.0), (0.5, "um", 2.2),
              (100, "nm", 0.87), (5, "µm", 41.3), (50, "nm", 0.52)]
    for font in FONTS[:n_fonts]:
        for size in (12, 16, 22):
            for dark in (True, False):
                for layout in ("above", "beside", "box"):
                    value, unit, nm = values[seed % len(values)]
                    out.append(Case(font=font, size=size, dark=dark, layout=layout, value=value, unit=unit,
                                    nm_per_px=nm, seed=seed, top=(seed % 7 == 3 and layout != "box"),
                                    jpeg=95 if seed % 5 == 4 else None))
                    seed += 1
    return out
