"""measures.stats.pool_summaries: per-image summaries, as the product writes them, pooled into
what pooled_stats computes from all the objects (the sample std of the union, ddof=1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annotations.model import Instance
from measures.objects import measure_arrays
from measures.stats import ImageMeasures, pool_summaries, pooled_stats
from outputs.files import summary_for, write_outputs

IMAGE = np.full((48, 160, 3), 40, np.uint8)
POOLED_KEYS = ("n_images", "n_objects", "counts", "mean_d_px", "std_d_px", "mean_d_nm", "std_d_nm")


def _squares(sides: list[int], label: str = "particle", x: int = 4) -> list[Instance]:
    out = []
    for side in sides:
        square = np.array([[x, 4], [x + side, 4], [x + side, 4 + side], [x, 4 + side]], float)
        out.append(Instance(label, square, 0.9))
        x += side + 4
    return out


def _written_summary(tmp: Path, stem: str, instances: list[Instance], nm: float | None) -> dict:
    """The summary JSON that write_outputs stores (the one predict jobs keep as Result.summary)."""
    paths = write_outputs(tmp / stem, stem, IMAGE, instances, nm_per_px=nm)
    return json.loads(Path(paths["summary"]).read_text())


def _reference(images: list[tuple[list[Instance], float | None]]) -> dict:
    return pooled_stats([ImageMeasures(f"i{k}", measure_arrays(inst), IMAGE.shape, nm)
                         for k, (inst, nm) in enumerate(images)])


def test_five_plus_four_objects_give_the_sample_std_of_all_nine(tmp_path: Path) -> None:
    a, b = _squares([6, 7, 8, 9, 10]), _squares([12, 13, 15, 18])
    summaries = [_written_summary(tmp_path, "a", a, 2.0), _written_summary(tmp_path, "b", b, 2.0)]
    d_nm = np.concatenate([measure_arrays(a).d_px, measure_arrays(b).d_px]) * 2.0
    pooled = pool_summaries(summaries)
    assert pooled["n_images"] == 2 and pooled["n_objects"] == 9 and pooled["counts"] == {"particle": 9}
    assert pooled["mean_d_nm"] == pytest.approx(d_nm.mean(), rel=1e-12)
    assert pooled["std_d_nm"] == pytest.approx(np.std(d_nm, ddof=1), rel=1e-12)
    assert pooled["std_d_nm"] != pytest.approx(np.std(d_nm), rel=1e-3)  # not the population std
    assert pooled["std_d_px"] == pytest.approx(np.std(d_nm / 2.0, ddof=1), rel=1e-12)
    reference = _reference([(a, 2.0), (b, 2.0)])
    for key in POOLED_KEYS:
        assert pooled[key] == pytest.approx(reference[key], rel=1e-12), key


def test_classes_scales_a_lone_object_and_an_empty_image_match_pooled_stats() -> None:
    images = [
        (_squares([5, 9, 11], "rod") + _squares([7, 8], "particle", x=60), 1.5),
        (_squares([14]), 3.0),  # one object: its own std is 0, it still spreads the union
        ([], 2.0),  # nothing found: adds an image, no objects
        (_squares([6, 6, 20, 4], "rod"), 0.5),
    ]
    summaries = [summary_for(IMAGE, inst, nm) for inst, nm in images]
    pooled = pool_summaries(summaries)
    reference = _reference(images)
    assert pooled["counts"] == {"particle": 3, "rod": 7} == reference["counts"]
    for key in POOLED_KEYS:
        assert pooled[key] == pytest.approx(reference[key], rel=1e-12), key
    d_nm = np.concatenate([measure_arrays(inst).d_px * nm for inst, nm in images if inst])
    assert pooled["std_d_nm"] == pytest.approx(np.std(d_nm, ddof=1), rel=1e-12)


def test_one_unscaled_image_pools_in_px_only() -> None:
    images = [(_squares([5, 9, 11]), 2.0), (_squares([7, 30]), None)]
    pooled = pool_summaries([summary_for(IMAGE, inst, nm) for inst, nm in images])
    reference = _reference(images)
    assert "mean_d_nm" not in pooled and "mean_d_nm" not in reference
    d_px = np.concatenate([measure_arrays(inst).d_px for inst, _ in images])
    assert pooled["mean_d_px"] == pytest.approx(reference["mean_d_px"], rel=1e-12)
    assert pooled["std_d_px"] == pytest.approx(np.std(d_px, ddof=1), rel=1e-12)
    assert pooled["std_d_px"] == pytest.approx(reference["std_d_px"], rel=1e-12)


def test_nothing_and_a_single_object() -> None:
    assert pool_summaries([]) == {"n_images": 0, "n_objects": 0, "counts": {}, "mean_d_px": None,
                                  "std_d_px": None}
    single = [(_squares([9]), None)]
    pooled = pool_summaries([summary_for(IMAGE, inst, nm) for inst, nm in single])
    reference = _reference(single)
    assert pooled["std_d_px"] == 0.0 == reference["std_d_px"]
    assert pooled["mean_d_px"] == pytest.approx(reference["mean_d_px"])
