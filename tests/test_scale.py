"""Images at another magnification than the training image (inference/scale.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotations.geometry import polygon_area
from inference.pipeline import PredictOptions, predict_image
from inference.scale import ScaledDetector, choose_scale
from segmodel.types import Detections
from tests.fake_detector import ThresholdDetector, disc_image

TRAINED_D = 20.0  # px: the only size the fake model "knows"


class SizeSelective(ThresholdDetector):
    """A fake model that, like a trained one, finds only objects near the size it learned."""

    def __init__(self) -> None:
        super().__init__(tile_size=1024)  # whole images: no object is cut into "small" pieces
        self.meta = {"label_stats": {"median_d_px": TRAINED_D, "p90_d_px": TRAINED_D * 1.1}}
        self.object_size = TRAINED_D * 1.1

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        out = []
        for det in super().detect(tiles):
            d = 2 * np.sqrt(det.masks.reshape(len(det), -1).sum(axis=1) / math.pi)
            keep = (d > 0.6 * TRAINED_D) & (d < 1.6 * TRAINED_D)
            out.append(Detections(det.boxes[keep], det.scores[keep], det.labels[keep], det.masks[keep]))
        return out


def grid_of_discs(diameter: float, side: int = 400) -> tuple[np.ndarray, int]:
    step = int(diameter * 2.2)
    starts = range(step, side - step // 2, step)
    centres = [(x, y) for y in starts for x in starts]
    # value 240: the fake scores brightness / 255, and only sure (>= 0.9) detections choose the scale
    return disc_image(side, side, [(x, y, diameter / 2) for x, y in centres], value=240), len(centres)


def test_objects_twice_the_trained_size_are_missed_at_1x_and_found_at_the_chosen_factor() -> None:
    image, n = grid_of_discs(2 * TRAINED_D)
    detector = SizeSelective()
    assert predict_image(image, detector, PredictOptions(edge_pad=0)).instances == []
    pred = predict_image(image, detector, PredictOptions(edge_pad=0, auto_scale=True))
    assert pred.stats["scale_factor"] == pytest.approx(0.5)
    assert len(pred.instances) == n
    # outlines come back in the image's own pixels, at the objects' real size
    areas = [polygon_area(i.polygon) for i in pred.instances]
    assert np.median(areas) == pytest.approx(math.pi * TRAINED_D**2, rel=0.15)


def test_objects_of_the_trained_size_stay_at_1x_and_small_ones_are_never_enlarged_unasked() -> None:
    detector = SizeSelective()
    same, n_same = grid_of_discs(TRAINED_D)
    choice = choose_scale(same, detector)
    assert choice.factor == 1.0 and len(choice.probes) == 7
    assert len(predict_image(same, detector, PredictOptions(edge_pad=0, auto_scale=True)).instances) == n_same
    # enlarging is the user's call (PredictOptions.scale): at 1.4-2x real models grow sure of texture
    small, _ = grid_of_discs(TRAINED_D / 2)
    assert choose_scale(small, detector).factor == 1.0


def test_objects_four_times_the_trained_size_are_found_at_a_quarter() -> None:
    image, n = grid_of_discs(4 * TRAINED_D, side=800)
    pred = predict_image(image, SizeSelective(), PredictOptions(edge_pad=0, auto_scale=True))
    assert pred.stats["scale_factor"] == pytest.approx(0.25) and len(pred.instances) == n


def test_a_given_factor_is_used_as_is_and_the_detector_sees_enlarged_tiles() -> None:
    image, n = grid_of_discs(TRAINED_D / 2, side=200)
    detector = SizeSelective()
    pred = predict_image(image, detector, PredictOptions(edge_pad=0, scale=2.0))
    assert len(pred.instances) == n and pred.stats["scale_factor"] == 2.0
    assert max(max(shape[:2]) for call in detector.calls for shape in call) == 400


def test_a_model_without_label_statistics_keeps_1x_and_bad_factors_are_refused() -> None:
    image, _ = grid_of_discs(2 * TRAINED_D)
    assert choose_scale(image, ThresholdDetector()).factor == 1.0
    with pytest.raises(ValueError, match="positive"):
        ScaledDetector(SizeSelective(), 0.0)


@pytest.mark.parametrize("auto", [True, False])
def test_the_predict_job_shrinks_large_particles_and_records_the_factor(settings, auto) -> None:
    """The bot's worker (jobs/predict.py) chooses the scale unless the job says auto_scale False; the
    summary carries the factor, which the caption shows."""
    import io

    from PIL import Image

    from tests.test_bot_microscope import run_predict_job

    image, n = grid_of_discs(2 * TRAINED_D)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    params = {"threshold": 0.5, **({} if auto else {"auto_scale": False})}
    summary = run_predict_job(settings, buffer.getvalue(), "zoomed.png", params, SizeSelective())
    if auto:
        assert summary["scale_factor"] == pytest.approx(0.5) and summary["n_objects"] == n
    else:
        assert "scale_factor" not in summary and summary["n_objects"] < n
