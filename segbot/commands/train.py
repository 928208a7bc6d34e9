"""`segbot train` and `segbot weights`: thin click adapters over trainer.train and segmodel.weights."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from segbot.errors import user_errors
from segmodel.options import ARCHES


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(max(0, seconds))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLine:
    """One self-rewriting line on stderr (a plain new line every 10% when not a terminal)."""

    def __init__(self, label: str = "training", width: int = 24) -> None:
        self.label = label
        self.width = width
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.started = time.monotonic()

    def __call__(self, p) -> None:  # p: trainer.train.TrainProgress
        if p.stage in ("preparing", "saving", "validating"):
            self._emit(f"{p.stage}...", final=not self.tty)
            return
        if p.stage == "done":
            return
        frac = p.iteration / p.max_iterations if p.max_iterations else 0.0
        filled = int(round(frac * self.width))
        loss = f"loss {p.loss:.3f}" if p.loss is not None else ""
        bar = "#" * filled + "." * (self.width - filled)
        text = f"{self.label} [{bar}] {p.iteration}/{p.max_iterations} {loss} ETA {_clock(p.eta_s)}"
        decile = int(frac * 10)
        if self.tty:
            self._emit(text, final=p.iteration == p.max_iterations)
        elif decile != self.last_decile:
            self.last_decile = decile
            self._emit(text, final=True)

    def _emit(self, text: str, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def read_sources(files: tuple[Path, ...], max_pixels: int) -> list:
    from annotations.labelme import read_labelme

    return [read_labelme(path, base_dir=path.parent, max_pixels=max_pixels) for path in files]


def summary_lines(result) -> list[str]:
    stats = result.label_stats
    init = result.init
    start = "random weights"
    if init.get("path"):
        start = f"{init['init']} weights ({init.get('loaded')} tensors of {init.get('path')})"
    lines = [
        f"model saved to {result.bundle_dir}",
        f"classes: {', '.join(result.classes)}; {stats.get('n_objects')} labelled objects in "
        f"{stats.get('n_regions')} crop(s), median diameter {stats.get('median_d_px', 0):.1f} px, "
        f"rescale {result.rescale:g}x",
        f"{result.iterations} iterations in {_clock(result.seconds)}, starting from {start}",
    ]
    hold = result.metrics.get("holdout")
    if hold:
        spread = f" (90 % range {hold['f1_low']:.2f}-{hold['f1_high']:.2f})" if "f1_low" in hold else ""
        lines.append(f"held-out crop ({hold['n_gt']} objects): precision {hold['precision']:.2f}, "
                     f"recall {hold['recall']:.2f}, F1 {hold['f1']:.2f}{spread}")
    else:
        lines.append("no held-out crop (needs 2+ crops and 20+ objects)")
    return lines


@click.command("train")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New (or empty) folder for the model bundle.")
@click.option("--arch", type=click.Choice(ARCHES), default="tiny", show_default=True,
              help="tiny runs on a CPU; r50 and x101 want a GPU.")
@click.option("--iterations", type=click.IntRange(1), default=None,
              help="Training iterations (default per arch).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Passes over the labelled crops.")
@click.option("--rescale", type=click.FloatRange(0.25, 4.0), default=None,
              help="Image enlargement before detection (default: from the object size, 1-3x).")
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--holdout/--no-holdout", default=True, show_default=True,
              help="Hold one crop out for validation (joins training for the last 20%).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default SEGBOT_DEVICE).")
@click.option("--init", default="auto", show_default=True,
              help="auto (the base model, shipped or SEGBOT_BASE_MODEL, when it is of this --arch and "
                   "has as many classes; else random), random, coco (SEGBOT_COCO_WEIGHTS), base or a "
                   "weights path.")
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def train(files: tuple[Path, ...], out_dir: Path, arch: str, iterations: int | None, epochs: int | None,
          rescale: float | None, augment: bool, holdout: bool, device: str | None, init: str,
          seed: int) -> None:
    """Train a model from LabelMe FILES (objects labelled inside 'crop' rectangles)."""
    from core.settings import get_settings
    from segmodel.bundle import BundleError
    from segmodel.options import OptionsError, TrainOptions
    from trainer.init_weights import WeightPaths
    from trainer.threads import ThreadPlan
    from trainer.train import train_model

    settings = get_settings()
    try:
        options = TrainOptions(arch=arch, iterations=iterations, epochs=epochs, rescale=rescale,
                               augment=augment, holdout=holdout, device=device or settings.device,
                               init=init, seed=seed)
        sources = read_sources(files, settings.max_image_pixels)
        result = train_model(sources, out_dir, options, progress=ProgressLine(),
                             weights=WeightPaths.from_settings(settings),
                             threads=ThreadPlan.from_settings(settings))
    except (OptionsError, BundleError, FloatingPointError) as error:
        raise click.ClickException(str(error)) from None
    for line in summary_lines(result):
        click.echo(line)


@click.group("weights")
def weights() -> None:
    """Starting weights: fetch COCO checkpoints (operators with internet), check weight files."""


@weights.command("fetch")
@click.option("--arch", type=click.Choice(["r50", "x101"]), default="x101", show_default=True)
@click.option("--dest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the checked weights (default DATA_DIR/weights/<arch>_coco.pt).")
@click.option("--url", default=None, help="Override the download URL (a mirror); the checksum still applies.")
@click.option("--sha256", "sha256", default=None, help="Expected sha256 (full or prefix) for --url.")
@user_errors
def fetch(arch: str, dest: Path | None, url: str | None, sha256: str | None) -> None:
    """Download the COCO Cascade Mask R-CNN checkpoint, verify its sha256, keep only tensors."""
    from core.settings import get_settings
    from segmodel.weights import COCO_CHECKPOINTS, WeightsError, fetch_checkpoint

    settings = get_settings()
    known = COCO_CHECKPOINTS[arch]
    dest = dest or settings.data_dir / "weights" / f"{arch}_coco.pt"
    try:
        path, digest = fetch_checkpoint(
            url or known["url"], sha256 or known["sha256"], dest,
            progress=lambda n: click.echo(f"\r{n / 1e6:.0f} MB", nl=False, err=True))
    except WeightsError as error:
        raise click.ClickException(str(error)) from None
    click.echo("", err=True)
    click.echo(f"verified sha256 {digest[:16]}..., weights written to {path}")
    click.echo(f"use them with: SEGBOT_COCO_WEIGHTS={path} segbot train ... --arch {arch} --init coco")


@weights.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@user_errors
def check(path: Path) -> None:
    """Check that a weights file or model bundle loads safely (tensors only)."""
    from segmodel.bundle import WEIGHTS, BundleError, load_state_dict, read_meta
    from trainer.ship import MANIFEST, verify_shipped

    try:
        if path.is_dir():
            meta = read_meta(path)
            if (path / MANIFEST).is_file():
                manifest = verify_shipped(path)
                command = str(manifest.get("command"))
                command = command if len(command) < 100 else command[:97] + "..."
                click.echo(f"shipped base model: sha256 matches its manifest ({manifest['dtype']}, "
                           f"{manifest['images']} images, built by: {command})")
            state = load_state_dict(path / WEIGHTS)
            click.echo(f"model bundle: {meta.get('arch')} classes {', '.join(meta['classes'])}, "
                       f"{len(state)} tensors")
        else:
            state = load_state_dict(path)
            click.echo(f"{path.name}: {len(state)} tensors, "
                       f"{sum(int(t.numel()) for t in state.values()) / 1e6:.1f} M parameters")
    except BundleError as error:
        raise click.ClickException(str(error)) from None


@weights.command("base")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New (or empty) folder for the base model bundle.")
@click.option("--dataset", "datasets", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with images/ID.png and segmaps/ID.png instance maps (e.g. EMPS); repeatable.")
@click.option("--synthetic", type=click.IntRange(0), default=40, show_default=True,
              help="Synthetic particle scenes made in code.")
@click.option("--exclude", multiple=True, help="Image IDs to leave out (e.g. a benchmark's test images).")
@click.option("--arch", type=click.Choice(ARCHES), default="tiny", show_default=True)
@click.option("--iterations", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default SEGBOT_DEVICE).")
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def base(out_dir: Path, datasets: tuple[Path, ...], synthetic: int, exclude: tuple[str, ...], arch: str,
         iterations: int, device: str | None, seed: int) -> None:
    """Pretrain a base model (one class, 'particle') that user training starts from with --init base."""
    from core.settings import get_settings
    from segmodel.bundle import BundleError
    from segmodel.options import OptionsError, TrainOptions
    from trainer.base_model import base_sources, build_base_model

    try:
        options = TrainOptions(arch=arch, iterations=iterations, device=device or get_settings().device,
                               seed=seed)
        sources = base_sources(datasets, synthetic, set(exclude))
        if not sources:
            raise OptionsError("nothing to train on: give --dataset folders or --synthetic N > 0")
        n_objects = sum(len(s.instances) for s in sources)
        click.echo(f"base model: {len(sources)} images ({synthetic} synthetic), {n_objects} objects")
        result = build_base_model(sources, out_dir, options, progress=ProgressLine())
    except (OptionsError, BundleError, FloatingPointError) as error:
        raise click.ClickException(str(error)) from None
    words = ["weights", "base", "--out", str(out_dir), *[w for d in datasets for w in ("--dataset", str(d))],
             "--synthetic", str(synthetic), *[w for x in exclude for w in ("--exclude", x)], "--arch", arch,
             "--iterations", str(iterations), "--seed", str(seed)]
    (result.bundle_dir / BUILD).write_text(json.dumps(build_provenance(words), indent=1) + "\n",
                                           encoding="utf-8")
    click.echo(f"base model saved to {result.bundle_dir} ({result.iterations} iterations in "
               f"{_clock(result.seconds)}, final loss {result.metrics.get('final_loss', 0):.3f})")
    click.echo(f"use it with: SEGBOT_BASE_MODEL={result.bundle_dir} segbot train ... --init base")
    click.echo(f"or ship it: segbot weights ship {result.bundle_dir} --out models/base-tiny")


BUILD = "BUILD.json"  # beside a base bundle: the command, commit and machine that built it


def build_provenance(words: list[str]) -> dict:
    """What built a base model: its command line (`words` after `segbot`), the code's commit, the machine."""
    import os
    import shlex
    import subprocess

    import torch

    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    from core.machine import cpu_name

    cpu = cpu_name()
    return {"command": "segbot " + shlex.join(words), "commit": commit,
            "hardware": f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"}


@weights.command("ship")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New (or empty) folder, e.g. models/base-tiny (what a fresh clone trains from).")
@click.option("--command", "command", default=None,
              help="The command that built BUNDLE (default: its BUILD.json).")
@click.option("--commit", default=None, help="The commit that built BUNDLE (default: its BUILD.json).")
@user_errors
def ship(bundle: Path, out_dir: Path, command: str | None, commit: str | None) -> None:
    """Write a base model bundle as the repository ships it: float16 weights and MANIFEST.json."""
    from segmodel.bundle import BundleError
    from trainer.ship import ship_base_model

    build = bundle / BUILD
    provenance = json.loads(build.read_text(encoding="utf-8")) if build.is_file() else {}
    provenance.update({k: v for k, v in (("command", command), ("commit", commit)) if v})
    try:
        manifest = ship_base_model(bundle, out_dir, provenance)
    except BundleError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"shipped base model: {out_dir} ({manifest['bytes'] / 1e6:.1f} MB float16, sha256 "
               f"{manifest['sha256'][:16]}..., {manifest['images']} images, "
               f"{manifest['iterations']} iterations)")
