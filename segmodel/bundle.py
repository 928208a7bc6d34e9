"""Model bundles: a directory with weights.pt (a plain state_dict), bundle.json and MODEL_CARD.md.

Weights are saved as a bare dict of tensors and only ever read back with
`torch.load(weights_only=True)`: no pickled objects, so a bundle cannot run code when loaded.
Bundles are written into a temporary sibling directory and renamed into place, so a failed or
cancelled run never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
WEIGHTS = "weights.pt"
META = "bundle.json"
CARD = "MODEL_CARD.md"


class BundleError(Exception):
    """A bundle is missing, broken or not loadable safely; str() is the message."""


def versions() -> dict[str, str]:
    import mmcv
    import mmdet
    import mmengine
    import torch

    return {"torch": torch.__version__, "mmdet": mmdet.__version__, "mmcv": mmcv.__version__,
            "mmengine": mmengine.__version__}


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_bundle_atomic(out_dir: Path, fill: Callable[[Path], None]) -> Path:
    """Create `out_dir` (absent or empty) with what `fill(tmp_dir)` writes, or nothing at all."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BundleError(f"{out_dir} already exists and is not empty; choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        fill(tmp)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def save_weights(path: Path, state_dict: dict[str, Any]) -> None:
    import torch

    plain = {k: v.detach().to("cpu").clone() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    torch.save(plain, path)


def load_state_dict(path: Path) -> dict[str, Any]:
    """Tensors from a weights file, read without unpickling arbitrary objects.

    Accepts a bare state_dict or a checkpoint dict with `state_dict`/`model`/`module` inside.
    """
    import pickle

    import torch

    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as error:
        raise BundleError(f"{Path(path).name} is not a plain weights file and was not loaded "
                          f"(only tensors are accepted): {str(error).splitlines()[0][:160]}") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model", "module"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data:
        raise BundleError(f"{Path(path).name} holds no weights")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise BundleError(f"{Path(path).name} holds no tensors")
    return tensors


def read_meta(bundle_dir: Path) -> dict[str, Any]:
    path = Path(bundle_dir) / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir} is not a segbot model (no {META})") from None
    except (OSError, ValueError) as error:
        raise BundleError(f"{META} in {bundle_dir} is unreadable: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else "?"
        raise BundleError(f"{bundle_dir}: unsupported model format {found}")
    for key in ("config", "classes", "rescale", "tile_size"):
        if key not in meta:
            raise BundleError(f"{META} in {bundle_dir} lacks {key!r}")
    return meta


def write_meta(tmp_dir: Path, meta: dict[str, Any]) -> None:
    (tmp_dir / META).write_text(json.dumps(meta, indent=2, sort_keys=False, default=_jsonable) + "\n",
                                encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def model_card(meta: dict[str, Any]) -> str:
    stats = meta.get("label_stats") or {}
    metrics = meta.get("metrics") or {}
    opts = meta.get("options") or {}
    lines = [
        f"# segbot model ({meta.get('arch', '?')})",
        "",
        f"- Created: {meta.get('created', '?')}",
        f"- Architecture: {meta.get('description', meta.get('arch', '?'))}",
        f"- Classes: {', '.join(meta.get('classes', []))}",
        f"- Image rescale before detection: {meta.get('rescale')}x; tile {meta.get('tile_size')} px",
        f"- Trained on {stats.get('n_objects', '?')} labelled objects in {stats.get('n_regions', '?')} crops "
        f"of {stats.get('n_images', '?')} image(s); median object diameter "
        f"{_fmt(stats.get('median_d_px'))} px",
        f"- Training: {meta.get('iterations', '?')} iterations in {_fmt(meta.get('train_seconds'))} s, "
        f"init {(meta.get('init') or {}).get('init', opts.get('init', 'random'))}, "
        f"augment {opts.get('augment', True)}, "
        f"seed {opts.get('seed', 0)}",
    ]
    hold = metrics.get("holdout")
    if hold:
        lines.append(f"- Held-out crop {hold.get('region')} ({hold.get('n_gt')} objects): precision "
                     f"{_fmt(hold.get('precision'))}, recall {_fmt(hold.get('recall'))}, "
                     f"F1 {_fmt(hold.get('f1'))}{_range(hold)} "
                     f"(centre rule, score >= {hold.get('threshold')}, measured at iteration "
                     f"{hold.get('iteration')}, before that crop joined training)")
    else:
        lines.append("- No held-out validation (too few crops or objects to spare one).")
    vers = meta.get("versions") or {}
    lines += [
        f"- Software: torch {vers.get('torch')}, mmdet {vers.get('mmdet')}, mmcv {vers.get('mmcv')}",
        "",
        "Limits: a model trained from a few dozen objects knows only what those objects looked like;",
        "check the overlay on new images and add labelled crops where it misses or over-splits.",
        "",
    ]
    return "\n".join(lines)


def _range(hold: dict[str, Any]) -> str:
    low, high = hold.get("f1_low"), hold.get("f1_high")
    if not isinstance(low, float) or not isinstance(high, float):
        return ""
    return f", 90 % range {low:.2f}-{high:.2f} for another crop like it"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "?" if value is None else str(value)
