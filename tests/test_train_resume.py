"""A real tiny training interrupted after a checkpoint and resumed ends where an uninterrupted
run ends: same weights and loss (every RNG state is restored, so even the data order matches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segmodel.options import TrainOptions
from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

pytestmark = pytest.mark.slow

OPTIONS = dict(arch="tiny", iterations=6, holdout=False, batch_size=1, crop_size=128, seed=3, init="random")
TAG = {"job_id": 1, "fingerprint": "f"}


def _sources():
    from annotations.labelme import read_labelme

    ann = with_crops(synthetic_scene(5, (256, 256), n_particles=20, n_pits=4), n_crops=1, crop_size=160)
    return [read_labelme(json.dumps(labelme_dict(ann, "t.png")).encode(), name="t.json")]


def _weights(bundle: Path):
    import torch

    return torch.load(bundle / "weights.pt", weights_only=True)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, monkeypatch) -> None:
    import torch

    from trainer.checkpoint import CheckpointPlan
    from trainer.train import TrainingCancelled, train_model

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same thread count in both runs
    torch.set_num_threads(1)
    sources = _sources()
    plain = train_model(sources, tmp_path / "plain", TrainOptions(**OPTIONS))

    plan = CheckpointPlan(tmp_path / "ck" / "checkpoint.pt", every_iters=3, every_s=3600, tag=TAG)
    seen = []

    def stop_after_checkpoint() -> bool:  # the worker dies right after its first checkpoint
        return plan.path.exists()

    with pytest.raises(TrainingCancelled):
        train_model(sources, tmp_path / "first", TrainOptions(**OPTIONS), checkpoint=plan,
                    should_cancel=stop_after_checkpoint)
    assert not (tmp_path / "first").exists() and plan.path.is_file()
    resumed = train_model(sources, tmp_path / "second", TrainOptions(**OPTIONS), progress=seen.append,
                          checkpoint=CheckpointPlan(plan.path, every_iters=3, every_s=3600, tag=TAG),
                          resume_from=plan.path)
    assert resumed.resumed_at == 3 and resumed.iterations == 6
    stages = [p.stage for p in seen]
    assert "training, resumed at 3 / 6" in stages
    assert [p.iteration for p in seen if p.stage.startswith("training,")] == [3, 4, 5, 6]

    a, b = _weights(plain.bundle_dir), _weights(resumed.bundle_dir)
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    loss_gap = abs(plain.metrics["final_loss"] - resumed.metrics["final_loss"])
    print(f"resume vs uninterrupted: max weight difference {worst:.2e}, final loss "
          f"{plain.metrics['final_loss']:.6f} vs {resumed.metrics['final_loss']:.6f} (gap {loss_gap:.2e})")
    assert worst < 1e-4 and loss_gap < 1e-4

    # A checkpoint of another run (other tag) is ignored: training starts from iteration 0.
    other = train_model(sources, tmp_path / "third", TrainOptions(**OPTIONS),
                        checkpoint=CheckpointPlan(tmp_path / "x.pt", tag={"job_id": 2, "fingerprint": "f"}),
                        resume_from=plan.path)
    assert other.resumed_at is None
