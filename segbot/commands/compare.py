"""`segbot compare SET_A SET_B --out DIR`: two sets of particles compared (measures.compare), each a
folder of results (the *_objects.csv tables segbot writes) or of LabelMe files, or one such file."""

from __future__ import annotations

from pathlib import Path

import click

from measures.sizes import find_metal
from segbot.commands.annotations import CROP_LABEL, METAL, _json_files
from segbot.errors import user_errors


def _tables(path: Path) -> list[Path]:
    """The per-image objects tables of a results folder (pooled_* is those again)."""
    if path.is_file():
        return [path] if path.name.endswith("_objects.csv") else []
    return sorted(p for p in path.glob("*_objects.csv") if not p.name.startswith("pooled"))


def load_set(path: Path, nm_per_px: float | None, crop_label: str):
    """A SizeSet from a results folder (objects tables) or LabelMe files; --nm-per-px scales LabelMe
    files that carry no scale of their own."""
    from measures.compare import SetImage, size_set
    from measures.objects import measure_arrays
    from outputs.tables import sizes_from_csv, usable_instances

    tables = _tables(path)
    images = []
    if tables:
        images = [sizes_from_csv(p.read_text(encoding="utf-8")) for p in tables]
    else:
        from annotations.crops import assign
        from annotations.labelme import read_labelme

        files = [p for p in _json_files([path]) if not p.name.endswith(("_summary.json", "_coco.json"))]
        for p in files:
            ann = read_labelme(p, crop_label=crop_label)
            instances = [i for r in assign(ann)[0] for i in r.instances] if ann.crops else ann.instances
            instances, _ = usable_instances(instances, ann.image.shape)
            a = measure_arrays(instances)
            scale = ann.nm_per_px or nm_per_px
            images.append(SetImage(a.labels.tolist(), a.d_px, a.d_px * scale if scale else None))
    return size_set(path.name if path.is_dir() else path.stem, images)


@click.command("compare")
@click.argument("set_a", type=click.Path(exists=True, path_type=Path))
@click.argument("set_b", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for compare.txt, compare.csv and compare.png.")
@click.option("--class", "label", default=None,
              help="Compare this class only (default: every class but single sites).")
@click.option("--nm-per-px", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Scale for LabelMe files that carry none (both sets).")
@click.option("--lang", type=click.Choice(["en", "ru"]), default="en", show_default=True)
@METAL
@CROP_LABEL
@user_errors
def compare(set_a: Path, set_b: Path, out_dir: Path, label: str | None, nm_per_px: float | None, lang: str,
            metal: str | None, crop_label: str) -> None:
    """Compare the particle sizes of SET_A and SET_B (fresh and spent catalyst, two preparations ...):
    both sets' numbers side by side, the ratio of mean sizes B/A with its 95 % bootstrap interval,
    Kolmogorov-Smirnov and Mann-Whitney tests, one picture. A scaled set is never compared with an
    unscaled one."""
    from measures.compare import compare_sets
    from outputs.compare import write_comparison

    a = load_set(set_a, nm_per_px, crop_label)
    b = load_set(set_b, nm_per_px, crop_label)
    if a.name == b.name:
        a.name, b.name = f"A:{a.name}", f"B:{b.name}"
    compared = compare_sets(a, b, find_metal(metal), label)
    paths = write_comparison(out_dir, compared, lang)
    click.echo(paths["text"].read_text(encoding="utf-8").rstrip())
    click.echo(f"-> {paths['text']}, {paths['csv'].name}, {paths['picture'].name}")
