"""The bad-input corpus: every file is refused with its own typed error and a usable message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotations.errors import ALL_ERRORS
from annotations.labelme import read_labelme
from core.errors import InputError
from imaging.images import read_image

CORPUS = Path(__file__).parent / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())["files"]


def _read(entry: dict, source):
    kwargs = {"max_bytes": entry["max_bytes"]} if "max_bytes" in entry else {}
    if entry["reader"] == "labelme":
        return read_labelme(source, name=entry["file"], **kwargs)
    return read_image(source, name=entry["file"], **kwargs)


def test_corpus_is_big_and_listed():
    assert len(MANIFEST) >= 30
    on_disk = {p.name for p in CORPUS.iterdir()} - {"manifest.json", "README.md", "make_corpus.py"}
    assert on_disk == {e["file"] for e in MANIFEST}
    assert {e["code"] for e in MANIFEST} <= set(ALL_ERRORS)
    assert len({e["code"] for e in MANIFEST}) >= 18


@pytest.mark.parametrize("mode", ["path", "bytes"])
@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_corpus_file_refused(entry: dict, mode: str):
    path = CORPUS / entry["file"]
    source = path if mode == "path" else path.read_bytes()
    with pytest.raises(InputError) as info:
        _read(entry, source)
    error = info.value
    assert error.code == entry["code"], str(error)
    assert type(error) is ALL_ERRORS[entry["code"]]
    message = str(error)
    assert 15 < len(message) < 400
    assert "Traceback" not in message and "\n" not in message
    assert entry["file"] in message or "embedded image" in message  # says which file


def test_messages_differ_between_problems():
    seen: dict[str, str] = {}
    for entry in MANIFEST:
        with pytest.raises(InputError) as info:
            _read(entry, CORPUS / entry["file"])
        text = str(info.value).replace(entry["file"], "FILE")
        assert seen.setdefault(text, entry["code"]) == entry["code"], f"same message for two problems: {text}"


def test_symlink_out_of_base_dir_refused(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes((CORPUS / "image_truncated.png").read_bytes())
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "img.png").symlink_to(outside / "secret.png")
    doc = json.loads((CORPUS / "image_missing_not_sent.json").read_text())
    doc["imagePath"] = "img.png"
    (folder / "a.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        read_labelme(folder / "a.json")
    assert info.value.code == "unsafe_image_path"


def test_directory_symlink_escape_refused(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "img.png").write_bytes(b"x")
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    doc = json.loads((CORPUS / "image_missing_not_sent.json").read_text())
    doc["imagePath"] = "sub/img.png"
    with pytest.raises(InputError) as info:
        read_labelme(json.dumps(doc).encode(), base_dir=folder)
    assert info.value.code == "unsafe_image_path"
