"""`segbot predict MODEL_DIR IMAGES_OR_JSON... --out DIR`: a trained model over whole images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from measures.sizes import find_metal
from segbot.commands.annotations import METAL
from segbot.errors import user_errors
from segmodel.options import DEFAULT_SCORE_THRESHOLD


def load_input(path: Path, max_pixels: int):
    """(stem, LoadedImage) from an image file or a LabelMe JSON (its image and scale)."""
    from core.i18n import N_
    from imaging.images import LoadedImage, read_image

    if path.suffix.lower() == ".json":
        from annotations.labelme import read_labelme

        ann = read_labelme(path, base_dir=path.parent, max_pixels=max_pixels)
        return path.stem, LoadedImage(ann.image, ann.nm_per_px, [],
                                      scale_source=N_("the LabelMe file") if ann.nm_per_px else None)
    return path.stem, read_image(path, max_pixels=max_pixels, info_bar=True)


def _tile_progress(name: str):
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if tty:
            sys.stderr.write(f"\r\033[K{name}: tile {done}/{total}" + ("\n" if done == total else ""))
        elif done == total:
            sys.stderr.write(f"{name}: {total} tiles\n")
        sys.stderr.flush()

    return report


def predict_files(detector, files: list[Path], out_dir: Path, threshold: float, tile: int | None,
                  nm_per_px: float | None, refine: bool, max_pixels: int, echo=click.echo,
                  scale_factor: float = 1.0, auto_scale: bool = False, metal=None) -> list[dict]:
    """Predict each file and write its outputs; returns one summary dict per image. Info bars and
    scale-bar boxes found in an image are left out of recognition and of the analysed area. The set's
    COCO JSON and Excel workbook (results_coco.json, results.xlsx) go beside the per-image files.
    `metal` (measures.sizes.Metal) adds the dispersion of scaled images."""
    from inference.pipeline import PredictOptions, predict_image
    from outputs.files import write_outputs
    from outputs.lab_formats import SetEntry, write_result_set
    from outputs.numbers import number_lines

    used: set[str] = set()
    results = []
    entries = []
    for path in files:
        stem, loaded = load_input(path, max_pixels)
        image = loaded.image
        base, k = stem, 2
        while stem in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem)
        options = PredictOptions(threshold=threshold, tile=tile, refine=refine, exclude=list(loaded.excluded),
                                 scale=scale_factor, auto_scale=auto_scale)
        prediction = predict_image(image, detector, options, progress=_tile_progress(path.name))
        if auto_scale and prediction.stats.get("scale_factor", 1.0) != 1.0:
            echo(f"{path.name}: particles larger than the labelled ones: recognised at "
                 f"{prediction.stats['scale_factor']:.3g}x")
        scale, source = loaded.nm_per_px, loaded.scale_source
        if nm_per_px is not None:
            scale, source = nm_per_px, "--nm-per-px"
        region = loaded.analysed_area_px if loaded.excluded else None
        if nm_per_px is not None:
            echo(f"{path.name}: scale {scale:.3g} nm/px from --nm-per-px")
        elif scale:
            echo(f"{path.name}: {loaded.scale_summary()}")
        for region_ in loaded.excluded:
            echo(f"{path.name}: {region_.describe()} left out")
        paths = write_outputs(out_dir, stem, image, prediction.instances, nm_per_px=scale, title=path.name,
                              region_area_px=region, excluded=loaded.excluded,
                              scale_source=source if scale else None, metal=metal)
        entries.append(SetEntry(stem, path.name, image.shape, prediction.instances, scale, region))
        import json

        summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
        mean_d = summary.get("mean_d_nm") if scale else summary.get("mean_d_px")
        unit = "nm" if scale else "px"
        refined = f", {prediction.n_refined} refined" if refine else ""
        echo(f"{path.name}: {len(prediction.instances)} objects, mean diameter "
             f"{'-' if mean_d is None else f'{mean_d:.1f}'} {unit}{refined} ({prediction.seconds:.1f} s) "
             f"-> {paths['overlay'].name}, {paths['labelme'].name}, {paths['csv'].name}")
        for line in number_lines(summary, "en") if summary.get("n_objects") else ():
            echo(f"  {line}")
        results.append({"file": str(path), "n_objects": len(prediction.instances), "summary": summary,
                        "paths": {k: str(v) for k, v in paths.items()}, "seconds": prediction.seconds})
    if entries:
        written = write_result_set(out_dir, entries, metal=metal)
        echo(f"set: {written['coco'].name}, {written['xlsx'].name}")
    return results


@click.command("predict")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=DEFAULT_SCORE_THRESHOLD,
              show_default=True, help="Minimum detection score.")
@click.option("--tile", type=click.IntRange(64, 4096), default=None,
              help="Tile side in model pixels (default from the model).")
@click.option("--nm-per-px", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pixel size; overrides the scale read from the image.")
@click.option("--refine/--no-refine", default=False, show_default=True,
              help="Refine contours by a 2D Gaussian fit (Okunev et al., Nanomaterials 2020, eq. 2).")
@click.option("--tta/--no-tta", default=False, show_default=True,
              help="Also run on 3 flipped copies and keep what most views agree on (4x the time; "
                   "F1 +0.01, size accuracy +0.01 on EMPS-dev).")
@click.option("--scale", "scale_factor", type=click.FloatRange(0.05, 20.0), default=1.0, show_default=True,
              help="Enlarge the images by this factor before recognition, for images at another "
                   "magnification than the training image (0.5: particles look twice the labelled size).")
@click.option("--auto-scale/--no-auto-scale", default=True, show_default=True,
              help="Without --scale: choose that factor (1/8 .. 1) per image, for particles larger than "
                   "the labelled ones (EMPS: same series F1 0.69 -> 0.74, other materials 0.54 -> 0.59, "
                   "same image unchanged; up to 2x the time on small images).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default SEGBOT_DEVICE).")
@METAL
@user_errors
def predict(model_dir: Path, inputs: tuple[Path, ...], out_dir: Path, threshold: float, tile: int | None,
            nm_per_px: float | None, refine: bool, tta: bool, scale_factor: float, auto_scale: bool,
            device: str | None, metal: str | None) -> None:
    """Find, outline and measure every object in IMAGES_OR_JSON with the model in MODEL_DIR.

    Writes per image: LabelMe JSON, overlay PNG, objects CSV, summary, histogram, ImageJ label TIFF
    and ROI set; for the set: a COCO JSON and an Excel workbook. Reads microscope files (DM3/DM4,
    TIA, EMD, MRC, Gwyddion, Nanonis ...) with their calibration, and leaves an SEM info bar out.
    """
    from core.settings import get_settings
    from segmodel.bundle import BundleError
    from segmodel.detector import UntrustedModelError, load_detector

    auto_scale = auto_scale and scale_factor == 1.0  # the user's own factor wins
    settings = get_settings()
    try:
        # The operator names the model on the command line: that folder is trusted for this run.
        detector = load_detector(model_dir, device=device or settings.device, trusted_roots=[model_dir],
                                 score_thr=threshold)
    except (BundleError, UntrustedModelError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    if tta:
        from inference.tta import FlipTTA

        detector = FlipTTA(detector)
    results = predict_files(detector, list(inputs), out_dir, threshold, tile, nm_per_px, refine,
                            settings.max_image_pixels, scale_factor=scale_factor, auto_scale=auto_scale,
                            metal=find_metal(metal))
    total = sum(r["n_objects"] for r in results)
    click.echo(f"{total} objects in {len(results)} image(s); outputs in {out_dir}")
