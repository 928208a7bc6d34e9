"""Image reading: formats, bit depths, multi-page TIFF, height maps (eq. 1), scale metadata, limits."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from core.errors import InputError
from imaging.images import read_height_map, read_image

RNG = np.random.default_rng(3)
GREY = RNG.integers(0, 255, (30, 40), dtype=np.uint8)
RGB = RNG.integers(0, 255, (30, 40, 3), dtype=np.uint8)


def pil_bytes(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def tiff_bytes(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_rgb_and_grey(fmt: str):
    assert np.array_equal(read_image(pil_bytes(RGB, fmt)).image, RGB)
    grey = read_image(pil_bytes(GREY, fmt)).image
    assert grey.shape == (30, 40, 3) and np.array_equal(grey[..., 1], GREY)


def test_jpeg_and_palette_and_rgba():
    smooth = np.dstack([np.indices((30, 40)).sum(axis=0).astype(np.uint8) * 3] * 3)
    jpg = read_image(pil_bytes(smooth, "JPEG", quality=95)).image
    assert jpg.shape == (30, 40, 3) and np.abs(jpg.astype(int) - smooth).mean() < 3
    pal = Image.fromarray(RGB).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    assert read_image(buf.getvalue()).image.shape == (30, 40, 3)
    rgba = np.dstack([RGB, np.full((30, 40), 255, np.uint8)])
    assert np.array_equal(read_image(pil_bytes(rgba, "PNG")).image, RGB)


def test_16_bit_png_and_tiff_stretched():
    a16 = GREY.astype(np.uint16) * 100 + 1000
    for data in (cv2.imencode(".png", a16)[1].tobytes(), tiff_bytes(a16)):
        loaded = read_image(data)
        assert loaded.image.dtype == np.uint8
        assert loaded.image[..., 0].min() == 0 and loaded.image[..., 0].max() == 255
        # order preserved
        assert np.array_equal(
            np.argsort(loaded.image[..., 0].ravel(), kind="stable"), np.argsort(GREY.ravel(), kind="stable")
        )
        assert any("16-bit" in n for n in map(str, loaded.notes))


def test_float_tiff_with_nan():
    f = GREY.astype(np.float32) / 7.0
    f[0, 0] = np.nan
    loaded = read_image(tiff_bytes(f))
    assert loaded.image[0, 0, 0] == 0 and loaded.image.max() == 255


def test_multipage_tiff_first_page_with_note():
    stack = np.stack([GREY, 255 - GREY, GREY // 2, GREY // 3, GREY // 4, GREY // 5])
    loaded = read_image(tiff_bytes(stack))
    assert np.array_equal(loaded.image[..., 0], GREY)
    assert any("first page" in n for n in map(str, loaded.notes))


def test_tiff_resolution_scale_and_print_dpi_ignored():
    # 2 nm/px = 5e6 px/cm
    scaled = read_image(tiff_bytes(GREY, resolution=(5e6, 5e6), resolutionunit=3))
    assert scaled.nm_per_px == pytest.approx(2.0)
    assert read_image(tiff_bytes(GREY, resolution=(72, 72), resolutionunit=2)).nm_per_px is None


def test_imagej_scale():
    data = tiff_bytes(GREY, imagej=True, resolution=(0.5, 0.5), metadata={"unit": "nm"})
    assert read_image(data).nm_per_px == pytest.approx(2.0)
    data = tiff_bytes(GREY, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "micron"})
    assert read_image(data).nm_per_px == pytest.approx(250.0)


def test_fei_sem_metadata_scale():
    ini = "[User]\nDate=01/01/2024\n[Scan]\nPixelWidth=1.5e-009\nPixelHeight=1.5e-009\n"
    data = tiff_bytes(GREY, extratags=[(34682, "s", 0, ini, True)])
    loaded = read_image(data)
    assert loaded.nm_per_px == pytest.approx(1.5)
    assert any("FEI" in n for n in map(str, loaded.notes))


def test_height_map_eq1_and_header_scale():
    h = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]) * 1e-9 + 5.0
    text = "WSxM file copyright UAM\nX Amplitude: 30 nm\n" + "\n".join(
        " ".join(f"{v:.12e}" for v in row) for row in h
    )
    loaded = read_image(text.encode(), name="map.txt")
    expected = np.rint((h - h.min()) / (h.max() - h.min()) * 255).astype(np.uint8)
    assert np.array_equal(loaded.image[..., 0], expected)
    assert loaded.nm_per_px == pytest.approx(10.0)
    grey, scale = read_height_map("1,2\n3,4\n")
    assert grey.tolist() == [[0, 85], [170, 255]] and scale is None


def test_pixel_limit_checked_before_decoding():
    with pytest.raises(InputError) as info:
        read_image(pil_bytes(RGB, "PNG"), max_pixels=1000)
    assert info.value.code == "too_many_pixels"
    with pytest.raises(InputError) as info:
        read_image(tiff_bytes(GREY), max_pixels=1000)
    assert info.value.code == "too_many_pixels"


def test_byte_limit(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(pil_bytes(RGB, "PNG"))
    with pytest.raises(InputError) as info:
        read_image(path, max_bytes=100)
    assert info.value.code == "file_too_large" and "a.png" in str(info.value)
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "missing.png")
    assert info.value.code == "image_missing"


def test_jpeg_exif_orientation_applied_like_labelme():
    img = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    assert read_image(buf.getvalue()).image.shape == (40, 30, 3)


def test_imagej_escaped_micro_sign():
    data = tiff_bytes(GREY, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "\\u00B5m"})
    assert read_image(data).nm_per_px == pytest.approx(500.0)
    assert (
        read_image(tiff_bytes(GREY, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "pixel"})).nm_per_px
        is None
    )
