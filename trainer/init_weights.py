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


def resolve_init(init: str, arch: str, weights: WeightPaths) -> str:
    """'auto' -> 'base' when the operator configured a base model of this preset, else 'random'."""
    if init != "auto":
        return init
    from segmodel.bundle import BundleError, read_meta

    if weights.base_model is None:
        return "random"
    try:
        return "base" if read_meta(weights.base_model).get("arch") == arch else "random"
    except BundleError:
        return "random"  # a misconfigured base model must not stop users from training


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
