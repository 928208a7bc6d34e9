"""Scale-bar reading on SEM-like images drawn in code: the fraction read exactly, the worst error.

`.venv/bin/python bench/bench_scalebar.py [--fonts N] [--one-by-one]`

Each image (tests/scalebar_images.py) has a micrograph and either a full-width info bar (bottom or
top: fields "HV ... kV", "WD ... mm", "mag ...", "HFW ... µm", a scale bar with its label above or
beside it) or a scale-bar box burned into a corner; fonts DejaVu Sans/Bold/Serif/Sans Mono and STIX
(matplotlib's font dir) at 12, 16 and 22 px; light-on-dark and dark-on-light; labels in nm and µm
("200 nm", "500nm", "1 µm", "0.5 um"); every fifth image JPEG (quality 95). The bar is drawn at 4x and
area-averaged, so its length is a fraction of a pixel; the truth is label length / drawn length.

"Read exactly" = the label's value and unit right and nm/px within 1 % of the truth. Also printed:
how many the region search found exactly, how many readings are below the ask-the-user confidence,
and the time (all labels go to Tesseract in one run unless --one-by-one). Goal: >= 95 % read, every
error < 1 %.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imaging.infobar import ASK_BELOW, analyse, analyse_many, tesseract_available  # noqa: E402
from tests.scalebar_images import FONTS, cases, draw_case  # noqa: E402


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fonts", type=int, default=len(FONTS), help="how many of the 5 fonts")
    parser.add_argument("--one-by-one", action="store_true", help="one Tesseract run per image")
    args = parser.parse_args()
    if not tesseract_available():
        print("tesseract-ocr is not installed: bash deploy/system-packages.sh", file=sys.stderr)
        return 2
    todo = cases(args.fonts)
    drawn = [draw_case(c) for c in todo]
    started = time.perf_counter()
    if args.one_by_one:
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
    print(f"scale-bar benchmark, {n} images ({args.fonts} fonts x 3 sizes x 2 polarities x 3 layouts)")
    print(f"hardware: {hardware()}")
    print(f"regions found exactly: {regions}/{n}")
    print(f"read exactly: {exact}/{n} = {100 * exact / n:.1f} % (goal >= 95 %)")
    print(f"worst nm/px error among those: {100 * worst:.2f} % (goal < 1 %)")
    print(f"readings below the ask-the-user confidence ({ASK_BELOW}): {unsure}/{exact}")
    print(f"time: {seconds:.1f} s ({1000 * seconds / n:.0f} ms per image, "
          f"{'one Tesseract run per image' if args.one_by_one else 'one Tesseract run for all'})")
    if misses:
        print("not read exactly:")
        print("\n".join(misses))
    return 0 if exact >= 0.95 * n and worst < 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
