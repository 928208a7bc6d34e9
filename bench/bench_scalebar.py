"""Scale-bar reading: drawn images (default) and real micrographs (--real DIR, --emps DIR ...).

`.venv/bin/python bench/bench_scalebar.py [--fonts N] [--one-by-one]`
`.venv/bin/python bench/bench_scalebar.py --real ../shared/data/scalebars --emps ../shared/data/emps-dev
 ../shared/data/emps-train`

Drawn (tests/scalebar_images.py): each image has a micrograph and either a full-width info bar (bottom
or top: fields "HV ... kV", "WD ... mm", "mag ...", "HFW ... µm", a scale bar with its label above or
beside it) or a scale-bar box burned into a corner; fonts DejaVu Sans/Bold/Serif/Sans Mono and STIX
(matplotlib's font dir) at 12, 16 and 22 px; light-on-dark and dark-on-light; labels in nm and µm
("200 nm", "500nm", "1 µm", "0.5 um"); every fifth image JPEG (quality 95). The bar is drawn at 4x and
area-averaged, so its length is a fraction of a pixel; the truth is label length / drawn length.
"Read exactly" = the label's value and unit right and nm/px within 1 % of the truth. Goal: >= 95 %
read, every error < 1 %.

Real (--real: a folder with images/ and truth.csv, see its README): every image is read twice, as the
file (its own tags: the metadata check) and as its pixels only (decoded, then saved as PNG without
tags, as a phone export or a figure panel would be). Per image: read (within 5 % of the truth), wrong
(beyond 5 %; "warned" when the reading is below the ask-the-user confidence), not read; the error;
the source named; whether the bar (truth.csv's bar_x0..bar_x1 x bar_rows) lies in a region left out.
Targets: >= 16/17 read, 0 wrong without a warning, the bar left out 17/17, metadata 12/12.

EMPS (--emps: folders of figure panels, images/*.png): the info bars and scale-bar boxes found (no
OCR). Which panels really hold one is decided by looking at them: bench/emps_bars.csv lists every
panel that a version of the search flagged, each looked at (info_bar: a full-width data band;
scale_bar: a scale bar anywhere, most journal panels have one; bar_side: the half it is in). An info
bar found on a panel without one, or a scale-bar region on a panel without a scale bar or in the
other half of the panel (a panel letter, an inset), is a false positive; a panel not listed
counts as holding neither (print it, look, add it). Target: 0.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core.errors import InputError  # noqa: E402
from imaging.images import encode_png, read_image  # noqa: E402
from imaging.infobar import ASK_BELOW, analyse, analyse_many, tesseract_available  # noqa: E402
from tests.scalebar_images import FONTS, cases, draw_case  # noqa: E402

EMPS_BARS = Path(__file__).with_name("emps_bars.csv")
TOLERANCE = 0.05


def hardware() -> str:
    from core.machine import cpu_name

    cpu = cpu_name()
    return f"{cpu}, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})"


def drawn_run(fonts: int, one_by_one: bool) -> bool:
    todo = cases(fonts)
    drawn = [draw_case(c) for c in todo]
    started = time.perf_counter()
    if one_by_one:
        results = [analyse(d.image) for d in drawn]
    else:
        results = analyse_many([d.image for d in drawn])
    seconds = time.perf_counter() - started
    exact, regions, unsure, worst, misses = 0, 0, 0, 0.0, []
    for case, d, r in zip(todo, drawn, results, strict=True):
        regions += [(g.x0, g.y0, g.x1, g.y1) for g in r.regions] == [d.excluded]
        s = r.scale
        unit = "nm" if case.unit == "nm" else "µm"
        ok = s is not None and s.label == f"{case.value:g} {unit}"
        err = abs(s.nm_per_px / d.nm_per_px - 1) if s is not None else None
        if ok and err < 0.01:
            exact += 1
            worst = max(worst, err)
            unsure += s.confidence < ASK_BELOW
        else:
            misses.append(f"  {case.font} {case.size}px {'dark' if case.dark else 'light'} {case.layout} "
                          f"'{case.label}': read {s.label if s else None}, error "
                          f"{'-' if err is None else f'{100 * err:.2f} %'}")
    n = len(todo)
    print(f"drawn images: {n} ({fonts} fonts x 3 sizes x 2 polarities x 3 layouts)")
    print(f"  regions found exactly: {regions}/{n}")
    print(f"  read exactly: {exact}/{n} = {100 * exact / n:.1f} % (goal >= 95 %)")
    print(f"  worst nm/px error among those: {100 * worst:.2f} % (goal < 1 %)")
    print(f"  readings below the ask-the-user confidence ({ASK_BELOW}): {unsure}/{exact}")
    print(f"  time: {seconds:.1f} s ({1000 * seconds / n:.0f} ms per image, "
          f"{'one Tesseract run per image' if one_by_one else 'one Tesseract run for all'})")
    if misses:
        print("  not read exactly:")
        print("\n".join(misses))
    return exact >= 0.95 * n and worst < 0.01


def _rows(spec: str) -> tuple[int, int]:
    a, _, b = spec.partition("-")
    return int(a), int(b or a)


def _bar_left_out(loaded, row: dict) -> bool:
    x0, x1 = int(row["bar_x0"]), int(row["bar_x1"])
    y0, y1 = _rows(row["bar_rows"])
    return any(r.x0 <= x0 and x1 < r.x1 and r.y0 <= y0 and y1 < r.y1 for r in loaded.excluded)


def real_run(folder: Path) -> bool:
    with open(folder / "truth.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    read = wrong_silent = wrong_warned = left_out = meta_have = meta_ok = 0
    seconds = 0.0
    print(f"real images: {n} ({folder})")
    print(f"  {'file':24} {'truth':>9} {'pixels':>9} {'err':>7} {'verdict':10} {'sure':>4} "
          f"{'bar out':7} {'tags':>9}  source")
    for row in rows:
        path = folder / "images" / row["file"]
        truth = float(row["nm_per_px"])
        try:
            own = read_image(path)
            pixels = own.image
        except InputError:  # a TIFF the reader cannot decode: its pixels through Pillow, for the test
            own = None
            pixels = np.asarray(Image.open(path).convert("RGB"))
        tags = None if own is None else own.nm_per_px
        if row["truth_from"] == "metadata" and not row["notes"].startswith("Derived"):  # copies: no tags
            meta_have += 1
            meta_ok += tags is not None and abs(tags / truth - 1) < 0.005
        png = encode_png(pixels)  # the pixels only: no tag survives
        started = time.perf_counter()
        loaded = read_image(png, name=Path(row["file"]).with_suffix(".png").name, info_bar=True)
        seconds += time.perf_counter() - started
        got = loaded.nm_per_px
        err = None if got is None else got / truth - 1
        if err is None:
            verdict = "not read"
        elif abs(err) <= TOLERANCE:
            verdict, read = "read", read + 1
        elif (loaded.scale_confidence or 0) < ASK_BELOW:
            verdict, wrong_warned = "wrong/ask", wrong_warned + 1
        else:
            verdict, wrong_silent = "WRONG", wrong_silent + 1
        out = _bar_left_out(loaded, row)
        left_out += out
        print(f"  {row['file']:24} {truth:9.4g} {'-' if got is None else f'{got:9.4g}':>9} "
              f"{'-' if err is None else f'{100 * err:+.1f}%':>7} {verdict:10} "
              f"{'-' if loaded.scale_confidence is None else f'{loaded.scale_confidence:.2f}':>4} "
              f"{'yes' if out else 'NO':7} "
              f"{'-' if tags is None else f'{tags:9.4g}':>9}  {loaded.scale_source or ''}"
              f"{'' if own else '  (the file itself: unreadable)'}")
    print(f"  read within 5 %: {read}/{n} (target >= {n - 1}); wrong beyond 5 % without a warning: "
          f"{wrong_silent} (target 0), with one: {wrong_warned}")
    print(f"  bar region left out: {left_out}/{n} (target {n}/{n}); metadata read: {meta_ok}/{meta_have} "
          f"(target {meta_have}/{meta_have})")
    print(f"  time, pixels only: {seconds:.1f} s ({1000 * seconds / n:.0f} ms per image)")
    return read >= n - 1 and wrong_silent == 0 and left_out == n and meta_ok == meta_have


def emps_run(folders: list[Path]) -> bool:
    with open(EMPS_BARS, newline="", encoding="utf-8") as fh:
        seen = {r["id"]: r for r in csv.DictReader(fh)}
    total = with_info = info_found = false_info = false_box = with_bar = bar_found = 0
    false_ids = []
    for folder in folders:
        for path in sorted((folder / "images").glob("*.png")):
            total += 1
            row = seen.get(path.stem)  # a panel nobody looked at counts as holding nothing
            has_info = row is not None and row["info_bar"] == "1"
            has_bar = row is not None and row["scale_bar"] == "1"
            with_info += has_info
            regions = analyse(read_image(path).image, read_label=False).regions
            bands = [r for r in regions if r.kind == "info_bar"]
            boxes = [r for r in regions if r.kind != "info_bar"]
            info_found += has_info and bool(bands)
            with_bar += has_bar
            bar_found += has_bar and bool(regions)
            side = row["bar_side"] if row else ""
            h = read_image(path).image.shape[0] if boxes else 0
            misplaced = [b for b in boxes if side and ((b.y0 + b.y1) / 2 < h / 2) != (side == "top")]
            wrong = (bands and not has_info) or (boxes and not has_bar) or misplaced
            false_info += bool(bands) and not has_info
            false_box += bool(boxes) and (not has_bar or bool(misplaced))
            if wrong:
                false_ids.append(f"{path.stem}{'' if row else ' (not looked at)'}: "
                                 f"{', '.join(r.describe() for r in regions)}")
    print(f"EMPS panels: {total}; seen to hold an info bar: {with_info}, found on {info_found}; seen to "
          f"hold a scale bar: {with_bar}, a region found on {bar_found}")
    print(f"  info bars found on panels without one: {false_info} (target 0); scale-bar regions found on "
          f"panels without a scale bar or in the other half: {false_box} (target 0)")
    for line in false_ids:
        print(f"  false: {line}")
    return false_info == 0 and false_box == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fonts", type=int, default=len(FONTS), help="how many of the 5 fonts")
    parser.add_argument("--one-by-one", action="store_true", help="one Tesseract run per image")
    parser.add_argument("--real", type=Path, help="a folder of real images with truth.csv")
    parser.add_argument("--emps", type=Path, nargs="*", default=[], help="folders of EMPS panels")
    parser.add_argument("--no-drawn", action="store_true", help="skip the drawn images")
    args = parser.parse_args()
    if not tesseract_available():
        print("tesseract-ocr is not installed: bash deploy/system-packages.sh", file=sys.stderr)
        return 2
    print(f"scale-bar benchmark; hardware: {hardware()}")
    ok = True
    if args.real:
        ok &= real_run(args.real)
    if args.emps:
        ok &= emps_run(args.emps)
    if not args.no_drawn:
        ok &= drawn_run(args.fonts, args.one_by_one)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
