"""Where a training run's starting weights come from.

The operator's base model and COCO checkpoint are paths from the settings; entry points read the
settings and pass the paths in (WeightPaths), so the trainer never looks anything up itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from segmodel.options import OptionsError


@dataclass(frozen=True)
class WeightPaths:
    """The operator's starting weights; None = not configured."""

    base_model: Path | None = None  # a base model bundle (SEGBOT_BASE_MODEL)
    coco_weights: Path | None = None  # a COCO checkpoint, tensors only (SEGBOT_COCO_WEIGHTS)

    @classmethod
    def from_settings(cls, settings: Settings) -> WeightPaths:
        """The paths of the settings (SEGBOT_BASE_MODEL, SEGBOT_COCO_WEIGHTS)."""
        base, coco = settings.base_model, settings.coco_weights
        return cls(None if base is None else Path(base), None if coco is None else Path(coco))


def resolve_init(init: str, arch: str, weights: WeightPaths, n_classes: int = 1) -> str:
    """'auto' -> 'base' when there is a base model of this preset with as many classes, else 'random'.

    Only a model the base fits whole starts from it by default: from the one-class base, a two-class
    model (the demo's particles and 5 labelled pits) found 0 of 15 pits after 120 iterations, 13 of 15
    from random weights (docs/benchmarks.md, "A base model every user starts from")."""
    if init != "auto":
        return init
    from segmodel.bundle import BundleError, read_meta

    if weights.base_model is None:
        return "random"
    try:
        meta = read_meta(weights.base_model)
    except BundleError:
        return "random"  # a misconfigured base model must not stop users from training
    fits = meta.get("arch") == arch and len(meta.get("classes", [])) == n_classes
    return "base" if fits else "random"


def init_path(init: str, weights: WeightPaths) -> Path:
    """The weights file or bundle a resolved, non-random `init` names."""
    if init == "coco":
        if weights.coco_weights is None:
            raise OptionsError("init 'coco' needs SEGBOT_COCO_WEIGHTS pointing at a local checkpoint "
                               "(see `segbot weights fetch`)")
        return weights.coco_weights
    if init == "base":
        if weights.base_model is None:
            raise OptionsError("init 'base' needs SEGBOT_BASE_MODEL pointing at a base model bundle")
        return weights.base_model
    return Path(init)


def load_init_weights(model: Any, init: str, arch: str, weights: WeightPaths) -> dict[str, Any]:
    """Load starting weights (same-shaped tensors only; heads of another class count are skipped)."""
    from segmodel.bundle import WEIGHTS, load_state_dict

    if init == "random":
        return {"init": "random"}
    path = init_path(init, weights)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise OptionsError(f"initial weights not found: {path}")
    state = load_state_dict(path)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fitting:
        raise OptionsError(f"no tensor in {path.name} fits the {arch} model; wrong preset?")
    model.load_state_dict(fitting, strict=False)
    return {"init": init, "path": str(path), "loaded": len(fitting), "skipped": len(own) - len(fitting)}
