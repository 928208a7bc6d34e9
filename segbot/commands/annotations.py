"""`segbot inspect`, `segbot stats`, `segbot eval`: thin click adapters over the annotations package."""

from __future__ import annotations

import json
from pathlib import Path

import click

from core.i18n import N_, render
from measures.sizes import METALS, find_metal
from segbot.errors import user_errors

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
HEIGHT_MAP_SUFFIXES = {".txt", ".asc", ".xyz", ".dat", ".csv"}
# DM3/DM4, TIA, EMD, MRC, Gwyddion, Nanonis ... (imaging.microscope)
MICROSCOPE_SUFFIXES = {".dm3", ".dm4", ".ser", ".emi", ".emd", ".mrc", ".ali", ".mrcz", ".blo", ".tvips",
                       ".unf", ".elid", ".hspy", ".prz", ".sur", ".pro", ".gwy", ".sxm"}


def _json_files(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() == ".json" and q.is_file())
            if not found:
                raise click.ClickException(f"{p} holds no LabelMe .json files.")
            out.extend(found)
        else:
            out.append(p)
    return out


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, k = stem, 2
    while candidate in used:
        candidate, k = f"{stem}_{k}", k + 1
    used.add(candidate)
    return candidate


METAL = click.option(
    "--metal", type=click.Choice(sorted(METALS), case_sensitive=False), default=None,
    help="Metal of the particles: adds their dispersion D = 6 (v_m/a_m)/d_s (spheres; Bergeret & Gallezot "
    "2008) where the scale is known.",
)
CROP_LABEL = click.option(
    "--crop-label", default="crop", show_default=True, help="Label of the rectangles marking labelled crops."
)


def _inspect_one(path: Path, lang: str, crop_label: str = "crop") -> str:
    from annotations.crops import format_summary, summarize_annotation
    from annotations.labelme import read_labelme
    from imaging.images import read_image

    if path.suffix.lower() == ".json":
        return format_summary(summarize_annotation(read_labelme(path, crop_label=crop_label)), lang)
    loaded = read_image(path, info_bar=True)
    h, w = loaded.image.shape[:2]
    line = f"{path.name}: " + render(lang, N_("image {width}x{height} px", width=w, height=h))
    if loaded.source_format not in (None, "PNG", "JPEG", "BMP", "TIFF"):
        line += " (" + render(lang, N_("{format} file", format=loaded.source_format)) + ")"
    if loaded.nm_per_px:
        line += ", " + render(lang, N_("scale {value:.3g} nm/px from {source}", value=loaded.nm_per_px,
                                       source=loaded.scale_source or "?"))
        if loaded.scale_confidence is not None and loaded.scale_confidence < 1:
            line += " (" + render(lang, N_("confidence {value:.2f}", value=loaded.scale_confidence)) + ")"
    if loaded.excluded:
        regions = ", ".join(render(lang, r.label()) for r in loaded.excluded)
        line += "; " + render(lang, N_("{regions} left out ({area:.0f} px² analysed)", regions=regions,
                                       area=loaded.analysed_area_px))
    return "\n".join([line, *(render(lang, N_("note: {note}", note=n)) for n in loaded.notes)])


@click.command("inspect")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--lang", type=click.Choice(["en", "ru"]), default="en", show_default=True)
@CROP_LABEL
@user_errors
def inspect_cmd(target: Path, lang: str, crop_label: str) -> None:
    """Validate and summarise a LabelMe file, an image, or every such file in a folder."""
    if not target.is_dir():
        click.echo(_inspect_one(target, lang, crop_label))
        return
    from core.errors import InputError

    files = sorted(
        p
        for p in target.iterdir()
        if p.is_file()
        and p.suffix.lower() in {".json"} | IMAGE_SUFFIXES | HEIGHT_MAP_SUFFIXES | MICROSCOPE_SUFFIXES
    )
    if not files:
        raise click.ClickException(f"{target} holds no LabelMe files or images.")
    bad = 0
    for path in files:
        try:
            click.echo(_inspect_one(path, lang, crop_label))
        except InputError as error:
            bad += 1
            click.echo(f"Error: {render(lang, error.text)}", err=True)
        click.echo("")
    if bad:
        raise click.ClickException(f"{bad} of {len(files)} file(s) refused.")


@click.command("stats")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for CSV, summaries, histograms, overlays.",
)
@click.option(
    "--nm-per-px",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Scale; overrides a scale found in the files.",
)
@click.option("--log", "log_hist", is_flag=True, help="Logarithmic histogram bins.")
@click.option(
    "--ids/--no-ids",
    default=None,
    help="Number objects on the overlay even where the ids crowd (default: only when every id fits beside "
    "its object).",
)
@click.option("--lang", type=click.Choice(["en", "ru"]), default="en", show_default=True)
@CROP_LABEL
@METAL
@user_errors
def stats(
    files: tuple[Path, ...],
    out_dir: Path,
    nm_per_px: float | None,
    log_hist: bool,
    ids: bool | None,
    lang: str,
    crop_label: str,
    metal: str | None,
) -> None:
    """Measure every object of LabelMe FILES (or folders of them): CSV, summary, histograms, overlay.

    With crops in a file only objects inside the crops count, and density is per crop area.
    Per file also an ImageJ label TIFF and ROI set; several files are also pooled (pooled_*, with a
    COCO JSON and an Excel workbook).
    """
    from annotations.crops import assign
    from annotations.labelme import read_labelme
    from measures.objects import measure_arrays
    from outputs.files import write_outputs, write_pooled

    paths = _json_files(list(files))
    # every file is checked before anything is written
    anns = [read_labelme(p, crop_label=crop_label) for p in paths]
    used: set[str] = set()
    pooled, outlines, names = [], [], []
    for path, ann in zip(paths, anns, strict=True):
        scale = nm_per_px or ann.nm_per_px
        region_area = None
        instances = ann.instances
        if ann.crops:
            regions, _ = assign(ann)
            instances = [i for r in regions for i in r.instances]
            region_area = sum(r.crop.width * r.crop.height for r in regions)
        stem = _unique_stem(path.stem, used)
        written = write_outputs(
            out_dir,
            stem,
            ann.image,
            instances,
            scale,
            title=stem,
            region_area_px=region_area,
            show_ids=ids,
            log_hist=log_hist,
            lang=lang,
            image_name=ann.name,
            crops=ann.crops,
            metal=find_metal(metal),
        )
        click.echo(written["text"].read_text(encoding="utf-8").rstrip())
        click.echo(f"-> {out_dir / stem}_*")
        pooled.append((stem, measure_arrays(instances), ann.image.shape, scale, region_area))
        outlines.append(instances)
        names.append(ann.name)
    if len(pooled) > 1:  # with the set's COCO JSON and Excel workbook (pooled_coco.json, pooled.xlsx)
        written = write_pooled(out_dir, pooled, log_hist=log_hist, instances=outlines, file_names=names,
                               metal=find_metal(metal), lang=lang)
        click.echo("")
        click.echo(written["text"].read_text(encoding="utf-8").rstrip())
        click.echo(f"-> {out_dir / 'pooled'}_*")


@click.command("eval")
@click.argument("pred", type=click.Path(exists=True, path_type=Path))
@click.argument("gt", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--coco/--no-coco", default=True, show_default=True, help="Also compute COCO AP (segm, bbox).")
@click.option("--max-dets", type=click.IntRange(min=500), default=1000, show_default=True)
@user_errors
def eval_cmd(pred: Path, gt: Path, as_json: bool, coco: bool, max_dets: int) -> None:
    """Score predictions PRED against ground truth GT (LabelMe files or folders paired by image name)."""
    from annotations.labelme import read_labelme
    from measures.evaluation import evaluate, format_evaluation

    pred_anns = [read_labelme(p) for p in _json_files([pred])]
    gt_anns = [read_labelme(p) for p in _json_files([gt])]
    if pred.is_dir() or gt.is_dir():  # pair by file stem, not by the image name inside
        for path, ann in zip(_json_files([pred]), pred_anns, strict=True):
            ann.name = path.stem
        for path, ann in zip(_json_files([gt]), gt_anns, strict=True):
            ann.name = path.stem
    result = evaluate(pred_anns, gt_anns, coco=coco, max_dets=max_dets)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(format_evaluation(result))
