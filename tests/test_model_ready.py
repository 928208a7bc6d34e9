"""What the chat says about a trained model: the ready message and /models, in English and Russian,
for a model with the new figures, one without a held-out crop, and one trained before they were kept."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.geometry import circle_polygon
from annotations.model import AnnotatedImage, Crop, Instance
from bot.captions import FEW_LABELS, duration_text, model_figures, model_line_figures, ready_text
from segmodel.options import HOLDOUT_MIN_OBJECTS
from trainer.dataset import build_regions
from trainer.train import device_info, trained_on

HOLD = {"region": "a.json#crop2", "n_gt": 25, "tp": 22, "fp": 2, "fn": 3, "n_pred": 24,
        "precision": 22 / 24, "recall": 22 / 25, "f1": 0.9, "iteration": 80, "threshold": 0.5}
NEW = {"final_loss": 1.27, "iterations_per_epoch": 1, "holdout": HOLD, "train_seconds": 130.4,
       "trained_on": {"n_objects": 45, "n_crops": 3, "n_images": 1, "counts": {"particle": 41, "rod": 4}},
       "device": "cuda:0", "device_name": "NVIDIA H200"}
NO_HOLD = {"final_loss": 0.8, "iterations_per_epoch": 2, "train_seconds": 41.0, "device": "cpu",
           "trained_on": {"n_objects": 12, "n_crops": 1, "n_images": 1, "counts": {"particle": 12}}}
OLD = {"final_loss": 1.27, "iterations_per_epoch": 1}  # a model from before these figures


def test_trained_on_counts_only_what_the_crops_showed() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    inside = [Instance("particle", circle_polygon(20 + 15 * k, 30, 5, 24)) for k in range(4)]
    inside.append(Instance("rod", circle_polygon(50, 60, 6, 24)))
    outside = Instance("particle", circle_polygon(170, 50, 6, 24))  # never shown to the model
    ann = AnnotatedImage("a.json", image, inside + [outside], crops=[Crop(0, 0, 100, 100)])
    regions = build_regions([ann], ["particle", "rod"], 1.0)
    data = trained_on(regions, ["particle", "rod"], 1)
    assert data == {"n_objects": 5, "n_crops": 1, "n_images": 1, "counts": {"particle": 4, "rod": 1}}


def test_device_info_on_the_cpu_has_no_gpu_name() -> None:
    assert device_info("cpu") == {"device": "cpu"}


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_ready_message_with_held_out_figures(lang: str) -> None:
    text = ready_text(lang, 3, NEW)
    lines = text.splitlines()
    assert "v3" in lines[0] and len(lines) == 6
    assert "45" in lines[1] and "particle 41, rod 4" in lines[1] and "3" in lines[1]
    assert f"{HOLD['precision']:.2f}" in lines[2] and f"{HOLD['recall']:.2f}" in lines[2]
    assert "25" in lines[2]
    caveat = {"en": "measured on one crop of your image; other images may score lower",
              "ru": "измерено на одной области вашего снимка; на других снимках может быть ниже"}[lang]
    assert caveat in lines[2].lower()
    assert duration_text(lang, 130.4) in lines[3] and "GPU (NVIDIA H200)" in lines[3]
    assert "rod (4)" in lines[4] and "particle" not in lines[4] and str(FEW_LABELS) in lines[4]
    assert "final_loss" not in text and "iterations_per_epoch" not in text
    # the same figures in /models, compact
    short = model_line_figures(lang, NEW)
    assert f"{HOLD['precision']:.2f}" in short and "particle 41, rod 4" in short and "rod (4)" in short
    assert short.startswith("\n") and short.count("\n") == 1


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_ready_message_without_a_held_out_crop(lang: str) -> None:
    text = ready_text(lang, 1, NO_HOLD)
    assert "12" in text and "particle 12" in text and duration_text(lang, 41) in text and "CPU" in text
    assert str(HOLDOUT_MIN_OBJECTS) in text  # says what it takes to get a check
    assert {"en": "precision", "ru": "точность"}[lang] not in text
    assert {"en": "Few labels", "ru": "Мало разметки"}[lang] not in text  # 12 >= FEW_LABELS


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_model_from_before_still_renders(lang: str) -> None:
    text = ready_text(lang, 2, OLD)
    assert text == ready_text(lang, 2, {})  # its loss means nothing to a scientist: not shown
    assert "v2" in text and "1.27" not in text and "None" not in text and "{" not in text
    assert model_line_figures(lang, OLD) == ""
    with_hold = ready_text(lang, 2, {**OLD, "holdout": HOLD})  # old models did keep held-out scores
    assert f"{HOLD['recall']:.2f}" in with_hold
    assert str(HOLDOUT_MIN_OBJECTS) not in text  # no claim why there is no check: we do not know


def test_russian_numbers_agree() -> None:
    one = {"trained_on": {"n_objects": 21, "n_crops": 1, "counts": {"particle": 21}}}
    many = {"trained_on": {"n_objects": 11, "n_crops": 5, "counts": {"particle": 11}}}
    assert "21 размеченном объекте в 1 области crop" in model_figures("ru", one)[0]
    assert "11 размеченных объектах в 5 областях crop" in model_figures("ru", many)[0]
    assert "1 crop:" in model_figures("en", one)[0] and "5 crops" in model_figures("en", many)[0]
    assert duration_text("en", 3725) == "1 h 2 min" and duration_text("ru", 59.6) == "1 мин 0 с"


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_the_held_out_f1_comes_with_its_range(lang: str) -> None:
    from measures.evaluation import f1_interval

    low, high = f1_interval(17, 2, 4)  # a crop of 21 objects
    assert low < 2 * 17 / (2 * 17 + 6) < high and high - low > 0.1  # few objects: a wide range
    wide = f1_interval(170, 20, 40)
    assert wide[1] - wide[0] < (high - low) / 2  # ten times the objects: a much narrower one
    hold = {**HOLD, "f1": 0.85, "f1_low": round(low, 3), "f1_high": round(high, 3)}
    text = ready_text(lang, 3, {**NEW, "holdout": hold})
    assert f"{low:.2f}" in text and f"{high:.2f}" in text and "0.85" in text and "90 %" in text
    assert len(text.splitlines()) == len(ready_text(lang, 3, NEW).splitlines())
    assert f"{low:.2f}" not in model_line_figures(lang, {**NEW, "holdout": hold})  # /models stays short


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_model_from_the_base_model_says_so(lang: str) -> None:
    start = {"from": "base"}
    text = ready_text(lang, 1, {**NO_HOLD, "start": start})
    line = {"en": "Started from segbot's base model", "ru": "Начата с базовой модели segbot"}[lang]
    assert line in text and {"en": "not from scratch", "ru": "а не с нуля"}[lang] in text
    assert {"en": "from the base model", "ru": "с базовой модели"}[lang] in \
        model_line_figures(lang, {**NO_HOLD, "start": start})
    for other in ("random", "bundle"):  # from scratch, or a fine-tuned version (its own line)
        assert line not in ready_text(lang, 1, {**NO_HOLD, "start": {"from": other}})
    fine_tuned = ready_text(lang, 2, {**NO_HOLD, "start": {"from": "bundle"},
                                      "fine_tune": {"from_version": 1, "from_model_id": 7}})
    assert "v1" in fine_tuned and line not in fine_tuned
