"""Small pure pieces of the bot: texts, throttle, scale parsing, file kinds, zip limits, redaction,
pooled statistics, the training estimate."""

from __future__ import annotations

import io
import logging
import string
import zipfile

import pytest

from bot.delivery import pooled
from bot.files_in import expand_zip, kind_of
from bot.handlers import parse_scale, scale_from_caption
from bot.i18n import EN, RU, lang_of, t
from bot.logsafe import install_redaction, redact
from bot.throttle import EditThrottle
from bot.training import estimate_minutes, next_option


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    assert set(EN) == set(RU)
    for key in EN:
        assert _fields(EN[key]) == _fields(RU[key]), key
    assert "crop" in t("en", "help") and "crop" in t("ru", "help")
    assert lang_of("ru-RU") == "ru" and lang_of("de") == "en" and lang_of(None) == "en"
    assert t("xx", "lang_set") == EN["lang_set"]


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


def test_pooled_statistics_are_exact_for_the_union() -> None:
    import numpy as np

    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 12.0])
    summaries = [
        {"n_objects": len(x), "mean_d_px": x.mean(), "std_d_px": x.std(), "counts": {"p": len(x)}}
        for x in (a, b)
    ]
    p = pooled(summaries)
    union = np.concatenate([a, b])
    assert p["total"] == 5 and p["counts"] == {"p": 5} and p["unit"] == "px"
    assert p["mean"] == pytest.approx(union.mean()) and p["std"] == pytest.approx(union.std())


def test_training_options_cycle_and_estimate() -> None:
    options = {"arch": "tiny", "iterations": None, "augment": True, "rescale": None}
    assert next_option(options, "arch")["arch"] == "r50"
    assert next_option(options, "aug")["augment"] is False
    assert next_option(options, "iters")["iterations"] == 50
    assert next_option({**options, "rescale": 3.0}, "rescale")["rescale"] is None
    assert estimate_minutes({"arch": "x101", "iterations": 1000}, "cpu") > estimate_minutes(
        {"arch": "x101", "iterations": 1000}, "cuda"
    )
