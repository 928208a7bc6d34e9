"""Microscope files in (imaging/microscope.py through read_image): each reader on its sample
file, its calibration as nm/px with where it came from, height channels through eq. (1), the first
frame of a stack, and the same limits and typed errors as any image. How each sample file is made
(by the library itself, or built from the format's description) is said in tests/microscope_files.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaging.errors import FileTooLarge, ImageUndecodable, TooManyPixels, UnknownFileType
from imaging.images import IMAGE_SUFFIXES, read_image, to_uint8_rgb
from tests.microscope_files import dm_bytes, emd_file, gwy_bytes, mrc_bytes, ser_bytes, sxm_bytes

RNG = np.random.default_rng(7)
IMG = RNG.integers(100, 4000, (48, 64)).astype(np.uint16)
HEIGHTS = RNG.normal(0, 1e-9, (40, 50))  # metres


def grey(loaded) -> np.ndarray:
    return loaded.image[..., 0]


def eq1(heights: np.ndarray) -> np.ndarray:
    lo, hi = heights.min(), heights.max()
    return np.rint((heights - lo) / (hi - lo) * 255).astype(np.uint8)


@pytest.mark.parametrize("version", [3, 4])
def test_digital_micrograph_image_and_calibration(version: int):
    # built from the DM3/DM4 format description (no library writes DM files)
    loaded = read_image(dm_bytes(IMG, 0.52, "nm", version=version), name=f"tem.dm{version}")
    assert np.array_equal(loaded.image, to_uint8_rgb(IMG))
    assert loaded.nm_per_px == pytest.approx(0.52, rel=1e-6)
    assert str(loaded.scale_source) == f"the DM{version} file's calibration"
    assert loaded.scale_summary() == f"scale 0.52 nm/px from the DM{version} file's calibration"
    assert loaded.scale_confidence == 1.0 and loaded.source_format == f"DM{version}"
    assert loaded.excluded == []


def test_dm_units_converted_and_uncalibrated_file():
    micron = read_image(dm_bytes(IMG, 0.0125, "µm"), name="a.dm4")
    assert micron.nm_per_px == pytest.approx(12.5, rel=1e-6)
    bare = read_image(dm_bytes(IMG, None), name="b.dm4")
    assert bare.nm_per_px is None and bare.scale_source is None and bare.scale_summary() is None
    # recognised by its magic bytes, whatever the name says
    renamed = read_image(dm_bytes(IMG, 0.52), name="upload.bin")
    assert renamed.source_format == "DM4" and renamed.nm_per_px == pytest.approx(0.52, rel=1e-6)


def test_dm_stack_gives_first_frame_with_a_note():
    stack = np.stack([IMG, IMG[::-1], IMG[:, ::-1]])
    loaded = read_image(dm_bytes(stack, 0.3), name="series.dm4")
    assert np.array_equal(loaded.image, to_uint8_rgb(IMG))
    assert any("3 frames" in n and "first" in n for n in map(str, loaded.notes))


def test_tia_ser():
    # built from the TIA series-file description; TIA stores rows bottom up, the reader turns them back
    loaded = read_image(ser_bytes(IMG.astype(np.int32), 0.25), name="stem_1.ser")
    assert np.array_equal(loaded.image, to_uint8_rgb(IMG.astype(np.int32)))
    assert loaded.nm_per_px == pytest.approx(0.25) and "TIA" in str(loaded.scale_source)


def test_tia_emi_alone_is_refused_with_advice():
    with pytest.raises(UnknownFileType, match=r"\.ser file"):
        read_image(b"\x00" * 64, name="stem.emi")


def test_mrc():
    # built from the MRC2014 specification; the cell is in angstroms
    loaded = read_image(mrc_bytes(IMG.astype(np.float32), angstrom_per_px=2.5), name="map.mrc")
    assert np.array_equal(loaded.image, to_uint8_rgb(IMG.astype(np.float32)))
    assert loaded.nm_per_px == pytest.approx(0.25)


def test_emd_written_by_rosettasciio(tmp_path: Path):
    path = emd_file(tmp_path / "haadf.emd", IMG, nm_per_px=0.8)
    loaded = read_image(path)
    assert np.array_equal(loaded.image, to_uint8_rgb(IMG))
    assert loaded.nm_per_px == pytest.approx(0.8) and str(loaded.scale_source) == "the EMD file's calibration"


def test_emd_spectrum_image_and_stack(tmp_path: Path):
    si = RNG.integers(0, 50, (20, 30, 16)).astype(np.uint16)
    loaded = read_image(emd_file(tmp_path / "si.emd", si, nm_per_px=2.0, last="eV"))
    assert np.array_equal(loaded.image, to_uint8_rgb(si.sum(axis=-1)))
    assert loaded.nm_per_px == pytest.approx(2.0)
    assert any("total-intensity" in n for n in map(str, loaded.notes))
    stack = np.stack([IMG, IMG[::-1]])
    loaded = read_image(emd_file(tmp_path / "stack.emd", stack, nm_per_px=0.4, last="frame"))
    assert np.array_equal(loaded.image, to_uint8_rgb(IMG)) and loaded.nm_per_px == pytest.approx(0.4)
    assert any("2 frames" in n for n in map(str, loaded.notes))


def test_gwyddion_height_channel_eq1():
    # written by gwyfile itself
    loaded = read_image(gwy_bytes(HEIGHTS, width_nm=50.0, channels=2), name="afm.gwy")
    assert np.array_equal(grey(loaded), eq1(HEIGHTS))
    assert loaded.nm_per_px == pytest.approx(1.0)  # 50 nm over 50 px
    assert any("2 channels" in n and "Height" in n for n in map(str, loaded.notes))
    assert any("eq. 1" in n for n in map(str, loaded.notes))


def test_nanonis_sxm_height_channel_eq1():
    # built from the Nanonis SXM description, read by nanonispy2
    loaded = read_image(sxm_bytes(HEIGHTS, range_nm=(25.0, 20.0)), name="stm.sxm")
    assert np.array_equal(grey(loaded), eq1(HEIGHTS.astype(">f4").astype(np.float64)))
    assert loaded.nm_per_px == pytest.approx(0.5)
    assert str(loaded.scale_source) == "the Nanonis file's scan range"


def test_corrupt_files_give_one_clear_message():
    good = dm_bytes(IMG, 0.52)
    with pytest.raises(ImageUndecodable, match="not a readable DM4 file"):
        read_image(good[: len(good) // 3], name="cut.dm4")
    with pytest.raises(ImageUndecodable, match="not a readable Gwyddion file"):
        read_image(b"GWYP" + b"\x01" * 40, name="bad.gwy")
    with pytest.raises(ImageUndecodable, match="Nanonis"):
        read_image(sxm_bytes(HEIGHTS)[:-100], name="cut.sxm")
    with pytest.raises(ImageUndecodable, match="MRC"):
        read_image(b"\x00" * 300, name="tiny.mrc")


def test_same_limits_as_images():
    with pytest.raises(TooManyPixels, match="Mpx"):
        read_image(dm_bytes(IMG, 0.52), name="big.dm4", max_pixels=1000)
    with pytest.raises(TooManyPixels):
        read_image(gwy_bytes(HEIGHTS), name="big.gwy", max_pixels=1000)
    with pytest.raises(FileTooLarge):
        read_image(dm_bytes(IMG, 0.52), name="big.dm4", max_bytes=1000)


def test_every_suffix_is_listed_for_uploads():
    for suffix in (".dm3", ".dm4", ".ser", ".emd", ".mrc", ".gwy", ".sxm"):
        assert suffix in IMAGE_SUFFIXES
