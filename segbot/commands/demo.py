"""`segbot demo`: a thin click adapter over segbot.demo.run_demo (offline, no services)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from segbot.demo import DEMO_ITERATIONS, run_demo  # light: the demo imports torch only when it runs
from segbot.errors import user_errors
from trainer.init_weights import WeightPaths


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the results (default ./segbot-demo-<time>).")
@click.option("--iterations", type=click.IntRange(1, 20000), default=DEMO_ITERATIONS, show_default=True,
              help="Training iterations.")
@click.option("--seed", type=int, default=7, show_default=True)
@user_errors
def demo(out_dir: Path | None, iterations: int, seed: int) -> None:
    """Train a tiny model on a synthetic labelled image and measure a second one, offline."""
    from core.settings import get_settings
    from segbot.commands.train import ProgressLine, _clock

    out_dir = out_dir or Path.cwd() / f"segbot-demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if out_dir.exists() and any(out_dir.iterdir()):
        raise click.ClickException(f"{out_dir} is not empty; choose a new folder with --out")
    click.echo(f"segbot demo: writing to {out_dir}")
    r = run_demo(out_dir, iterations=iterations, seed=seed, progress=ProgressLine(), echo=click.echo,
                 weights=WeightPaths.from_settings(get_settings()))
    for role in ("overlay", "labelme", "csv"):
        click.echo(f"  {role:8s} {r.paths[role]}")
    mean_d = "-" if r.mean_d_px is None else f"{r.mean_d_px:.1f} px"
    click.echo(f"Done in {_clock(r.seconds)}: found {r.n_found} objects on the unseen image "
               f"(truth {r.n_truth}; recall {r.recall:.2f}, precision {r.precision:.2f}), "
               f"mean equivalent diameter {mean_d}. Results in {r.out_dir}")
    found = ", ".join(f"{label} {tp} of {n}" for label, (tp, n) in r.per_class.items())
    click.echo(f"Found per class: {found}")
