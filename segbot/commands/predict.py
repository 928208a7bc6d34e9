"""`segbot predict MODEL_DIR IMAGES_OR_JSON... --out DIR`: a trained model over whole images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from segbot.errors import user_errors


def load_input(path: Path, max_pixels: int) -> tuple[str, object, float | None]:
    """(stem, uint8 RGB image, nm_per_px) from an image file or a LabelMe JSON (its image)."""
    if path.suffix.lower() == ".json":
        from annotations.labelme import read_labelme

        ann = read_labelme(path, base_dir=path.parent, max_pixels=max_pixels)
        return path.stem, ann.image, ann.nm_per_px
    from annotations.images import read_image

    loaded = read_image(path, max_pixels=max_pixels)
    return path.stem, loaded.image, loaded.nm_per_px


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
                  nm_per_px: float | None, refine: bool, max_pixels: int, echo=click.echo) -> list[dict]:
    """Predict each file and write its outputs; returns one summary dict per image."""
    from annotations.export import write_outputs
    from inference.pipeline import PredictOptions, predict_image

    options = PredictOptions(threshold=threshold, tile=tile, refine=refine)
    used: set[str] = set()
    results = []
    for path in files:
        stem, image, scale = load_input(path, max_pixels)
        base, k = stem, 2
        while stem in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem)
        prediction = predict_image(image, detector, options, progress=_tile_progress(path.name))
        scale = nm_per_px if nm_per_px is not None else scale
        paths = write_outputs(out_dir, stem, image, prediction.instances, nm_per_px=scale, title=path.name)
        import json

        summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
        mean_d = summary.get("mean_d_nm") if scale else summary.get("mean_d_px")
        unit = "nm" if scale else "px"
        refined = f", {prediction.n_refined} refined" if refine else ""
        echo(f"{path.name}: {len(prediction.instances)} objects, mean diameter "
             f"{'-' if mean_d is None else f'{mean_d:.1f}'} {unit}{refined} ({prediction.seconds:.1f} s) "
             f"-> {paths['overlay'].name}, {paths['labelme'].name}, {paths['csv'].name}")
        results.append({"file": str(path), "n_objects": len(prediction.instances), "summary": summary,
                        "paths": {k: str(v) for k, v in paths.items()}, "seconds": prediction.seconds})
    return results


@click.command("predict")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Minimum detection score.")
@click.option("--tile", type=click.IntRange(64, 4096), default=None,
              help="Tile side in model pixels (default from the model).")
@click.option("--nm-per-px", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pixel size; overrides the scale read from the image.")
@click.option("--refine/--no-refine", default=False, show_default=True,
              help="Refine contours by a 2D Gaussian fit (Okunev et al., Nanomaterials 2020, eq. 2).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default SEGBOT_DEVICE).")
@user_errors
def predict(model_dir: Path, inputs: tuple[Path, ...], out_dir: Path, threshold: float, tile: int | None,
            nm_per_px: float | None, refine: bool, device: str | None) -> None:
    """Find, outline and measure every object in IMAGES_OR_JSON with the model in MODEL_DIR.

    Writes per image: LabelMe JSON, overlay PNG, objects CSV, summary and histogram.
    """
    from core.settings import get_settings
    from segmodel.bundle import BundleError
    from segmodel.detector import UntrustedModelError, load_detector

    settings = get_settings()
    try:
        # The operator names the model on the command line: that folder is trusted for this run.
        detector = load_detector(model_dir, device=device or settings.device, trusted_roots=[model_dir],
                                 score_thr=threshold)
    except (BundleError, UntrustedModelError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    results = predict_files(detector, list(inputs), out_dir, threshold, tile, nm_per_px, refine,
                            settings.max_image_pixels)
    total = sum(r["n_objects"] for r in results)
    click.echo(f"{total} objects in {len(results)} image(s); outputs in {out_dir}")
