"""Small pure pieces of the bot: texts, throttle, scale parsing, file kinds, zip limits, redaction,
the pooled caption, the training estimate; and that the bot starts without the model stack."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from annotations.model import Instance
from bot.captions import caption_for, fmt_num, pooled_caption
from bot.files_in import expand_zip, kind_of
from bot.i18n import MESSAGES, lang_of, t
from bot.logsafe import install_redaction, redact
from bot.scale import parse_scale, scale_from_caption
from bot.throttle import EditThrottle
from bot.training import next_option
from core.i18n import fields, pattern
from measures.objects import measure_arrays
from outputs.files import write_outputs

REPO = Path(__file__).resolve().parent.parent


def test_every_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    # the whole catalog is checked in tests/test_i18n.py; here the bot's table through t()
    for key, text in MESSAGES.items():
        for n in (1, 2, 5):
            russian = pattern("ru", text, n)
            assert russian != "" and fields(russian) == text.placeholders, key
    assert "crop" in t("en", "help") and "crop" in t("ru", "help")
    assert "Как размечать" in t("ru", "help") and "Что вы получаете" in t("ru", "help")  # its parts too
    assert lang_of("ru-RU") == "ru" and lang_of("de") == "en" and lang_of(None) == "en"
    assert t("xx", "lang_set") == t("en", "lang_set") == MESSAGES["lang_set"].msgid != t("ru", "lang_set")


def test_throttle_spaces_edits_and_honours_retry_after() -> None:
    th = EditThrottle(min_interval=3.0)
    assert th.should_edit(1, "a", 0.0)
    th.edited(1, "a", 0.0)
    assert not th.should_edit(1, "b", 2.9) and th.should_edit(1, "b", 3.0)
    assert not th.should_edit(1, "a", 10.0)  # same text: no edit at all
    th.retry_after(1, 20.0, 5.0)
    assert not th.should_edit(1, "c", 24.9) and th.should_edit(1, "c", 25.0)
    assert th.should_edit(2, "x", 5.0)  # per message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7.34", 7.34),
        ("7,34nm", 7.34),
        ("0.5um", 500.0),
        ("2 nm/px", 2.0),
        ("-1", None),
        ("abc", None),
        ("0", None),
    ],
)
def test_parse_scale(text: str, value: float | None) -> None:
    assert parse_scale(text) == (pytest.approx(value) if value else None)


def test_scale_in_caption() -> None:
    assert scale_from_caption("sample 3, scale=7.34nm") == pytest.approx(7.34)
    assert scale_from_caption("Scale = 0.2 µm") == pytest.approx(200.0)
    assert scale_from_caption("no scale here") is None and scale_from_caption(None) is None


def test_kind_of() -> None:
    assert kind_of("a.json", b"\x89PNG....") == "json"  # the reader explains a renamed PNG
    assert kind_of("a.bin", b"\x89PNG\r\n\x1a\n") == "image"
    assert kind_of("x", b"PK\x03\x04...") == "zip"
    assert kind_of("scan.tif", b"II*\x00") == "image"
    assert kind_of("data", b'  {"shapes": []}') == "json"
    assert kind_of("virus.exe", b"MZ") == "unknown"


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_expansion_keeps_base_names_and_refuses_bombs() -> None:
    items = expand_zip(
        "s.zip",
        _zip({"../../etc/a.json": b"{}", "x/b.png": b"png", "__MACOSX/._b.png": b"", "dir/": b""}),
        10_000,
    )
    assert sorted(i.name for i in items) == ["a.json", "b.png"]
    with pytest.raises(ValueError, match="unpacks"):
        expand_zip("bomb.zip", _zip({"big.json": b"0" * 50_000}), 10_000)
    with pytest.raises(ValueError, match="more than"):
        expand_zip("many.zip", _zip({f"{i}.png": b"" for i in range(201)}), 10_000)
    with pytest.raises(ValueError):
        expand_zip("bad.zip", b"PK\x03\x04 nope", 10_000)


def test_redaction_of_tokens_and_file_urls(caplog: pytest.LogCaptureFixture) -> None:
    token = "987654321:AAHsecret_secret-SECRET"
    install_redaction(token)
    assert token not in redact(f"POST https://api.telegram.org/bot{token}/getMe")
    assert "secret" not in redact("GET http://h/file/bot987654321%3AAAHsecret_secret-SECRET/documents/f_1")
    caplog.set_level(logging.INFO)
    logging.getLogger("httpx").warning("HTTP Request: GET https://api.telegram.org/file/bot%s/x", token)
    assert "AAHsecret" not in caplog.text and "<redacted>" in caplog.text


def _squares(sides: list[int]) -> list[Instance]:
    out, x = [], 4
    for side in sides:
        square = np.array([[x, 4], [x + side, 4], [x + side, 4 + side], [x, 4 + side]], float)
        out.append(Instance("particle", square, 0.9))
        x += side + 4
    return out


def test_pooled_caption_shows_the_sample_std_of_all_objects(tmp_path: Path) -> None:
    """5 + 4 objects, summaries as predict jobs store them (outputs.files's summary JSON)."""
    image = np.full((48, 160, 3), 40, np.uint8)
    images = {"a": (_squares([6, 7, 8, 9, 10]), 2.0), "b": (_squares([12, 13, 15, 18]), 2.0)}
    summaries = []
    for stem, (instances, nm) in images.items():
        paths = write_outputs(tmp_path / stem, stem, image, instances, nm_per_px=nm)
        summaries.append(json.loads(paths["summary"].read_text()))
    d_nm = np.concatenate([measure_arrays(inst).d_px * nm for inst, nm in images.values()])
    assert fmt_num(np.std(d_nm, ddof=1)) != fmt_num(np.std(d_nm))  # the example tells them apart
    expected = f"mean D = {fmt_num(d_nm.mean())} ± {fmt_num(np.std(d_nm, ddof=1))} nm"
    assert pooled_caption("en", "stats", summaries) == f"Pooled over 2 images: 9 objects\n{expected}"
    big = pooled_caption("en", "predict_big", summaries)
    assert big.startswith("2 images recognised") and "Pooled: 9 objects" in big and big.endswith(expected)
    # one more image without a scale: everything in px
    lone = _squares([5])
    unscaled = json.loads(write_outputs(tmp_path / "c", "c", image, lone)["summary"].read_text())
    d_px = np.concatenate([measure_arrays(inst).d_px for inst in (*(i for i, _ in images.values()), lone)])
    assert pooled_caption("en", "stats", [*summaries, unscaled]) == (
        f"Pooled over 3 images: 10 objects\nmean D = {fmt_num(d_px.mean())} ± "
        f"{fmt_num(np.std(d_px, ddof=1))} px"
    )


def test_the_caption_says_when_an_image_was_recognised_shrunk() -> None:
    summary = {"n_objects": 4, "mean_d_px": 120.0, "std_d_px": 9.0}
    plain = caption_for({"name": "a.png", "summary": summary}, "en")
    assert plain == "a.png: 4 objects\nmean D = 120 ± 9 px"
    shrunk = {"name": "a.png", "summary": {**summary, "scale_factor": 0.35}}
    assert caption_for(shrunk, "en") == plain + "\nparticles larger than in your labels: recognised at 0.35x"
    assert caption_for(shrunk, "ru").endswith("распознано в масштабе 0.35x")


def test_the_bot_starts_without_the_model_stack() -> None:
    """The bot's event loop must never import torch: trainer, inference and the job bodies stay out of it
    (it makes jobs from jobs.params, nothing else of jobs)."""
    heavy = ("torch", "mmdet", "mmengine", "trainer", "inference", "jobs.registry", "jobs.train",
             "jobs.predict")
    code = f"import sys, bot.app; print([m for m in {heavy!r} if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_training_options_cycle_and_estimate() -> None:
    options = {"arch": "tiny", "iterations": None, "augment": True, "rescale": None}
    assert next_option(options, "arch")["arch"] == "r50"
    assert next_option(options, "aug")["augment"] is False
    assert next_option(options, "iters")["iterations"] == 50
    assert next_option({**options, "rescale": 3.0}, "rescale")["rescale"] is None


def _routes(data: str) -> list[str]:
    from bot.app import BUTTONS

    return [callback.__name__ for pattern, callback in BUTTONS if re.match(pattern, data)]


@pytest.mark.parametrize(
    ("data", "handler"),
    [
        ("lang:en", "on_lang_button"),
        ("lang:ru", "on_lang_button"),
        ("train:go", "on_train_button"),
        ("train:more", "on_train_button"),
        ("train:opts", "on_train_button"),
        ("opt:arch", "on_option_button"),
        ("opt:iters", "on_option_button"),
        ("opt:aug", "on_option_button"),
        ("opt:rescale", "on_option_button"),
        ("opt:whatever", "on_option_button"),  # redraws the options unchanged, as it always did
        ("m:use:12", "on_model_button"),
        ("m:ren:12", "on_model_button"),
        ("m:del:12", "on_model_button"),
        ("forget:yes", "on_forget_button"),
        ("forget:no", "on_forget_button"),
        ("corr:345", "on_correction_button"),
    ],
)
def test_every_button_the_bot_ever_sent_has_exactly_one_handler(data: str, handler: str) -> None:
    assert _routes(data) == [handler]


@pytest.mark.parametrize(
    "data",
    ["", "lang:de", "lang:en\n", "train:stop", "m:use:", "m:use:1:2", "m:zap:1", "m:use:x", "forget:maybe",
     "corr:", "corr:12a", "opt", "models:use:1"],
)
def test_unknown_buttons_match_no_feature_and_get_the_stale_answer(data: str) -> None:
    assert _routes(data) == []
