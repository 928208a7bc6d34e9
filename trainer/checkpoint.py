"""Training checkpoints for resuming a job whose worker died: weights, optimizer, schedule
position, loss average, metrics so far and every RNG state (torch, numpy, python, the sampler).

Only plain data is saved (tensors, dicts, lists, ints, floats, strings), so a checkpoint is read
back with `torch.load(weights_only=True)`: a file planted in the store cannot run code. A
checkpoint is used only when its tag (job id, options/data fingerprint) and its shapes match the
run that loads it; anything else is refused and training starts from the beginning.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1


class CheckpointRejected(Exception):
    """A checkpoint that must not be used (another job's, damaged, or not plain data)."""


@dataclass
class CheckpointPlan:
    """Where and how often to checkpoint: every `every_iters` iterations and at least every
    `every_s` seconds. `tag` must match on load; `on_saved(path)` runs after each write (the job
    body uploads it to an object store there)."""

    path: Path
    every_iters: int = 200
    every_s: float = 300.0
    tag: dict[str, Any] = field(default_factory=dict)
    on_saved: Callable[[Path], None] | None = None
    _last: float = field(default_factory=lambda: time.monotonic())

    def due(self, done: int, total: int) -> bool:
        if done >= total:  # the bundle is written next; a checkpoint would be useless
            return False
        return (self.every_iters > 0 and done % self.every_iters == 0) or \
            time.monotonic() - self._last >= self.every_s

    def saved(self) -> None:
        self._last = time.monotonic()


@dataclass
class TrainState:
    """What a resumed run restores; `rng` is capture_rng()'s plain-data form."""

    iteration: int
    total: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    loss_avg: float | None
    metrics: dict[str, Any]
    elapsed_s: float
    rng: dict[str, Any]


# RNG states as plain data


def capture_rng(sampler: np.random.Generator) -> dict[str, Any]:
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    bits = sampler.bit_generator.state
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        # PCG64's 128-bit integers as strings: plain, and exact
        "sampler": {"bit_generator": bits["bit_generator"],
                    "state": {k: str(v) for k, v in bits["state"].items()},
                    "has_uint32": int(bits["has_uint32"]), "uinteger": int(bits["uinteger"])},
    }


def restore_rng(state: dict[str, Any], sampler: np.random.Generator) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    s = state["sampler"]
    sampler.bit_generator.state = {"bit_generator": s["bit_generator"],
                                   "state": {k: int(v) for k, v in s["state"].items()},
                                   "has_uint32": s["has_uint32"], "uinteger": s["uinteger"]}


# Saving and loading


def save_checkpoint(plan: CheckpointPlan, state: TrainState) -> Path:
    """Write atomically (temp file beside it, then os.replace): a reader never sees half a file."""
    import torch

    path = Path(plan.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": FORMAT,
        "tag": dict(plan.tag),
        "iteration": int(state.iteration),
        "total": int(state.total),
        "model": {k: v.detach().to("cpu").clone() for k, v in state.model.items()},
        "optimizer": state.optimizer,
        "loss_avg": None if state.loss_avg is None else float(state.loss_avg),
        "metrics": _plain(state.metrics),
        "elapsed_s": float(state.elapsed_s),
        "rng": state.rng,
    }
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(data, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    plan.saved()
    if plan.on_saved is not None:
        plan.on_saved(path)
    return path


def _plain(value: Any) -> Any:
    """JSON-like data only (numpy scalars become Python numbers): weights_only loads refuse others."""
    import json

    return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


_RNG_KEYS = {"torch", "numpy", "python", "sampler"}


def load_checkpoint(path: Path, tag: dict[str, Any], total: int, model_state: dict[str, Any]) -> TrainState:
    """Read a checkpoint for this run, or raise CheckpointRejected saying why it does not fit."""
    import torch

    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any damage (zip, pickle, bytes) means "not ours to use"
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointRejected(f"not a plain checkpoint: {first[:160]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointRejected("unknown checkpoint format")
    if data.get("tag") != dict(tag):
        raise CheckpointRejected(f"written by another job or other options ({data.get('tag')!r})")
    iteration = data.get("iteration")
    if data.get("total") != total or not isinstance(iteration, int) or not 0 < iteration < total:
        raise CheckpointRejected(f"iteration {iteration!r} of {data.get('total')!r} does not fit {total}")
    weights = data.get("model")
    if not isinstance(weights, dict) or set(weights) != set(model_state) or any(
            not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(model_state[k].shape)
            for k, v in weights.items()):
        raise CheckpointRejected("its weights do not fit this model")
    rng = data.get("rng")
    if not isinstance(data.get("optimizer"), dict) or not _plain_rng(rng):
        raise CheckpointRejected("optimizer or random states missing or malformed")
    loss_avg = data.get("loss_avg")
    if loss_avg is not None and not isinstance(loss_avg, float):
        raise CheckpointRejected("loss average is not a number")
    return TrainState(iteration=iteration, total=total, model=weights, optimizer=data["optimizer"],
                      loss_avg=loss_avg, metrics=dict(data.get("metrics") or {}),
                      elapsed_s=float(data.get("elapsed_s") or 0.0), rng=rng)


def _plain_rng(rng: Any) -> bool:
    import torch

    try:
        return (set(rng) == _RNG_KEYS and rng["torch"].dtype == torch.uint8
                and tuple(rng["numpy"]["keys"].shape) == (624,) and isinstance(rng["numpy"]["pos"], int)
                and tuple(rng["python"]["state"].shape) == (625,)
                and all(isinstance(v, str) and v.isdigit() for v in rng["sampler"]["state"].values()))
    except (TypeError, KeyError, AttributeError):
        return False


def try_resume(path: Path | None, tag: dict[str, Any], total: int, model: Any,
               optimizer: Any) -> TrainState | None:
    """Load a fitting checkpoint into model and optimizer; None (start afresh) otherwise. The
    caller then restores the RNGs (restore_rng) into the sampler the resumed iteration uses."""
    if path is None or not Path(path).is_file():
        return None
    try:
        state = load_checkpoint(path, tag, total, model.state_dict())
        optimizer.load_state_dict(state.optimizer)  # checks its groups against ours first
    except (CheckpointRejected, KeyError, TypeError, ValueError, RuntimeError) as error:
        optimizer.state.clear()  # no momentum from a checkpoint we do not use
        log.warning("checkpoint %s not used, training from the start: %s", Path(path).name, error)
        return None
    model.load_state_dict(state.model)  # keys and shapes were checked
    log.info("resumed at iteration %s of %s from %s", state.iteration, total, Path(path).name)
    return state
