"""Training checkpoints: plain data only, atomic, refused unless they belong to this run."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.checkpoint import (
    CheckpointPlan,
    CheckpointRejected,
    TrainState,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    try_resume,
)

TAG = {"job_id": 7, "fingerprint": "abc"}


def _model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    loss = model(torch.randn(5, 4)).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _save(path: Path, model, optimizer, sampler, tag=TAG, iteration: int = 3, total: int = 10,
          metrics: dict | None = None) -> Path:
    plan = CheckpointPlan(path, every_iters=1, tag=tag)
    state = TrainState(iteration, total, model.state_dict(), optimizer.state_dict(), 0.5,
                       metrics or {"holdout": {"recall": np.float64(0.75), "n_gt": np.int64(4)}}, 12.5,
                       capture_rng(sampler))
    return save_checkpoint(plan, state)


def _draws(sampler: np.random.Generator) -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)],
            sampler.random(3).tolist())


def test_resume_restores_weights_optimizer_and_every_random_state(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer()
    sampler = np.random.default_rng(5)
    _step(model, optimizer)
    path = _save(tmp_path / "ck" / "checkpoint.pt", model, optimizer, sampler)
    expected = _draws(sampler)
    _step(model, optimizer)
    after = {k: v.clone() for k, v in model.state_dict().items()}

    fresh, fresh_opt = _model_and_optimizer(seed=1)
    other = np.random.default_rng(99)
    state = try_resume(path, TAG, 10, fresh, fresh_opt)
    assert state is not None and state.iteration == 3 and state.loss_avg == 0.5
    assert state.metrics == {"holdout": {"recall": 0.75, "n_gt": 4}} and state.elapsed_s == 12.5
    restore_rng(state.rng, other)
    assert _draws(other) == expected  # torch, numpy, python and the sampler continue identically
    _step(fresh, fresh_opt)  # momentum came back too: the next step lands on the same weights
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, after[key]), key
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer()
    path = _save(tmp_path / "c.pt", model, optimizer, np.random.default_rng(0))
    data = torch.load(path, weights_only=True)
    assert data["format"] == 1 and data["tag"] == TAG and data["iteration"] == 3


@pytest.mark.parametrize(("tag", "iteration", "total"), [
    ({"job_id": 8, "fingerprint": "abc"}, 3, 10),  # another job's
    ({"job_id": 7, "fingerprint": "xyz"}, 3, 10),  # same job, other options or data
    (TAG, 3, 12),  # planned for another number of iterations
    (TAG, 10, 10),  # finished: nothing left to resume
])
def test_checkpoint_of_another_run_is_refused(tmp_path: Path, tag, iteration, total) -> None:
    model, optimizer = _model_and_optimizer()
    path = _save(tmp_path / "c.pt", model, optimizer, np.random.default_rng(0), tag=tag,
                 iteration=iteration, total=total)
    with pytest.raises(CheckpointRejected):
        load_checkpoint(path, TAG, 10, model.state_dict())
    fresh, fresh_opt = _model_and_optimizer(seed=1)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert try_resume(path, TAG, 10, fresh, fresh_opt) is None
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())  # untouched
    assert not fresh_opt.state


def test_checkpoint_of_another_model_shape_is_refused(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer()
    path = _save(tmp_path / "c.pt", model, optimizer, np.random.default_rng(0))
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    with pytest.raises(CheckpointRejected, match="do not fit"):
        load_checkpoint(path, TAG, 10, other.state_dict())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not_a_dict"])
def test_damaged_checkpoint_is_refused(tmp_path: Path, damage: str) -> None:
    model, optimizer = _model_and_optimizer()
    path = _save(tmp_path / "c.pt", model, optimizer, np.random.default_rng(0))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + os.urandom(4096))  # a zip header, then noise
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointRejected):
        load_checkpoint(path, TAG, 10, model.state_dict())
    assert try_resume(path, TAG, 10, *_model_and_optimizer()) is None


class _Planted:
    """A pickle that would create a file when unpickled the unsafe way."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.target,))


def test_planted_pickle_is_never_unpickled(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "c.pt"
    torch.save({"format": 1, "tag": TAG, "iteration": 3, "total": 10, "x": _Planted(target)}, path)
    with open(tmp_path / "check.pkl", "wb") as handle:  # the payload works when unpickled unsafely
        pickle.dump(_Planted(tmp_path / "proof"), handle)
    pickle.loads((tmp_path / "check.pkl").read_bytes())
    assert (tmp_path / "proof").exists()
    with pytest.raises(CheckpointRejected, match="not a plain checkpoint"):
        load_checkpoint(path, TAG, 10, {})
    assert not target.exists()


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    model, optimizer = _model_and_optimizer()
    path = _save(tmp_path / "c.pt", model, optimizer, np.random.default_rng(0), iteration=3)

    def full_disk(obj, f, *a, **k):  # type: ignore[no-untyped-def]
        Path(f).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        _save(path, model, optimizer, np.random.default_rng(0), iteration=6)
    monkeypatch.undo()
    assert load_checkpoint(path, TAG, 10, model.state_dict()).iteration == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_plan_is_due_every_n_iterations_and_after_every_s(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("trainer.checkpoint.time.monotonic", lambda: clock[0])
    plan = CheckpointPlan(Path("x"), every_iters=50, every_s=300)
    assert [d for d in range(1, 201) if plan.due(d, 200)] == [50, 100, 150]  # never at the end
    clock[0] += 301
    assert plan.due(7, 200)  # slow iterations: five minutes passed
    plan.saved()
    assert not plan.due(8, 200)
    assert not CheckpointPlan(Path("x"), every_iters=0, every_s=300).due(50, 200)
