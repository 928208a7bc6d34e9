"""Microscope images in: PNG/JPEG/BMP/TIFF (8/16-bit, float, multi-page), ASCII height maps and the
microscopes' own files (imaging/microscope.py: DM3/DM4, TIA, EMD, MRC, Gwyddion, Nanonis ...)
-> uint8 RGB.

The pixel count is checked from the header before any decoding (decompression bombs), the byte count
before reading. A physical scale is taken from the file where it carries one: FEI/Thermo and Zeiss SEM
TIFF metadata, ImageJ/TIFF resolution tags, WSxM-style ASCII headers, the microscope file's calibration;
else from the scale bar burned into a flattened export (imaging/infobar.py), whose info bar is
also reported as a region to leave out of recognition and statistics.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.i18n import N_, NP_, Text
from imaging.errors import (
    BadHeightMap,
    EmptyFile,
    ImageUndecodable,
    TooManyPixels,
    UnknownFileType,
)
from imaging.infobar import Region, ScaleBar, analyse, analysed_area
from imaging.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, check_pixels, read_limited
from imaging.microscope import read_microscope, sniff_microscope
from imaging.units import unit_factor

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".txt", ".asc", ".xyz", ".dat", ".csv")
MICROSCOPE_SUFFIXES = (".dm3", ".dm4", ".ser", ".emi", ".emd", ".mrc", ".ali", ".mrcz", ".blo", ".tvips",
                       ".unf", ".elid", ".hspy", ".prz", ".sur", ".pro", ".gwy", ".sxm")
IMAGE_SUFFIXES = PLAIN_SUFFIXES + MICROSCOPE_SUFFIXES  # every name read_image takes (bot, CLI folders)


@dataclass
class LoadedImage:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    nm_per_px: float | None = None
    notes: list[Text] = field(default_factory=list)  # what the user should know: rendered in their language
    # where nm_per_px came from, in words: "the DM4 file's calibration", "the scale bar: 200 nm = 27.2 px"
    scale_source: Text | None = None
    # 1.0 for a file's own calibration; the scale bar reading's confidence (ask the user below 0.8)
    scale_confidence: float | None = None
    # info bars / scale-bar boxes burned into the image: no recognition or statistics there
    excluded: list[Region] = field(default_factory=list)
    scale_bar: ScaleBar | None = None  # when a bar was read
    source_format: str | None = None  # "DM4", "Gwyddion", "PNG" ...

    @property
    def analysed_area_px(self) -> float:
        """Image area minus the excluded regions: what density and coverage are per."""
        return analysed_area(self.image.shape, self.excluded)

    def scale_summary(self, change_hint: str | None = None) -> str | None:
        """'scale 0.52 nm/px from the DM4 file's calibration' (None without a scale)."""
        if not self.nm_per_px:
            return None
        text = f"scale {self.nm_per_px:.3g} nm/px"
        if self.scale_source:
            text += f" from {self.scale_source}"
        if change_hint:
            text += f"; {change_hint}"
        return text


def _read_source(source: Path | str | bytes, max_bytes: int, name: str | Text) -> bytes:
    data = read_limited(source, name, max_bytes, what=N_("Image file"),
                        advice=N_("Send a smaller file or crop the image."))
    if not data:
        raise EmptyFile(N_("'{name}' is empty (0 bytes).", name=name))
    return data


def sniff_kind(data: bytes) -> str | None:
    """'png' | 'jpeg' | 'bmp' | 'tiff' | 'text' | None, from the first bytes (never from the name)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    head = data[:4096]
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            try:
                head.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
                return None
        if re.search(rb"[-+]?\d", head):
            return "text"
    return None


def to_uint8_rgb(array: np.ndarray, notes: list[Text] | None = None) -> np.ndarray:
    """Any 2-D/3-D numeric array -> (H, W, 3) uint8; non-8-bit data is stretched min..max (as eq. 1)."""
    notes = notes if notes is not None else []
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):  # planar RGB(A)
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 2:  # grey + alpha
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ImageUndecodable(N_("Unsupported image layout {layout}; send a grey or RGB image.",
                                  layout=str(a.shape)))
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        floats, bits = a.dtype.kind == "f", a.dtype.itemsize * 8
        f = a.astype(np.float64)
        finite = np.isfinite(f)
        if not finite.any():
            raise ImageUndecodable(N_("The image holds no finite values."))
        lo, hi = float(f[finite].min()), float(f[finite].max())
        f = np.where(finite, f, lo)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        a = np.clip(np.rint((f - lo) * scale), 0, 255).astype(np.uint8)
        if floats:
            notes.append(N_("float image stretched to 8 bit (range {lo:g}..{hi:g}).", lo=lo, hi=hi))
        else:
            notes.append(N_("{bits}-bit image stretched to 8 bit (range {lo:g}..{hi:g}).",
                            bits=bits, lo=lo, hi=hi))
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a)


_TESCAN_PIXEL = re.compile(rb"(?:^|[\r\n])PixelSizeX=([0-9.]+(?:[eE][-+]?[0-9]+)?)")


def _tiff_scale(tif, page, notes: list[Text]) -> tuple[float | None, Text | None]:
    """(nm per px, where it came from in words) of a TIFF, or (None, None)."""
    # FEI / Thermo Fisher SEM: [Scan] PixelWidth in metres
    try:
        fei = tif.fei_metadata
    except Exception:  # noqa: BLE001 - malformed vendor tag: just no scale
        fei = None
    if fei:
        for section in ("Scan", "EScan", "Image"):
            value = (fei.get(section) or {}).get("PixelWidth")
            if isinstance(value, int | float) and 0 < value < 1e-3:
                notes.append(N_("Scale read from FEI/Thermo metadata."))
                return float(value) * 1e9, N_("the TIFF's FEI/Thermo metadata")
    # Zeiss SEM: ap_width = ('Width', value, unit), the field of view of the stored image (its pixel
    # size fields may describe the acquisition before a downsampled store: 5.825 nm for 11.65 nm/px)
    try:
        sem = tif.sem_metadata
    except Exception:  # noqa: BLE001
        sem = None
    if sem:
        width = sem.get("ap_width")
        if isinstance(width, tuple | list) and len(width) >= 3 and isinstance(width[1], int | float):
            factor = unit_factor(str(width[2]))
            if factor and width[1] > 0 and page.imagewidth:
                notes.append(N_("Scale read from Zeiss SEM metadata."))
                return float(width[1]) * factor / int(page.imagewidth), N_("the TIFF's Zeiss SEM metadata")
        entry = sem.get("ap_image_pixel_size") or sem.get("ap_pixel_size")
        if isinstance(entry, tuple | list) and len(entry) >= 3:
            factor = unit_factor(str(entry[2]))
            if factor and isinstance(entry[1], int | float) and entry[1] > 0:
                notes.append(N_("Scale read from Zeiss SEM metadata."))
                return float(entry[1]) * factor, N_("the TIFF's Zeiss SEM metadata")
    tags = page.tags
    # TESCAN: tag 50431 holds a thumbnail, then "PixelSizeX=0.000000004537772" (metres) among key=value lines
    tescan = tags.get(50431)
    if tescan is not None and isinstance(tescan.value, bytes):
        found = _TESCAN_PIXEL.search(tescan.value)
        if found and 0 < float(found.group(1)) < 1e-3:
            notes.append(N_("Scale read from TESCAN metadata."))
            return float(found.group(1)) * 1e9, N_("the TIFF's TESCAN metadata")
    # ImageJ: pixels per `unit` in XResolution
    xres = tags.get("XResolution")
    if xres is None:
        return None, None
    num, den = xres.value if isinstance(xres.value, tuple) else (xres.value, 1)
    if not num or not den:
        return None, None
    px_per_unit = num / den
    ij = getattr(tif, "imagej_metadata", None) or {}
    unit = ij.get("unit")
    if unit:
        factor = unit_factor(str(unit))
        if factor:
            notes.append(N_("Scale read from ImageJ resolution tags."))
            return factor / px_per_unit, N_("the TIFF's ImageJ resolution tags")
        return None, None
    res_unit = tags.get("ResolutionUnit")
    unit_code = int(res_unit.value) if res_unit is not None else 2
    per = {2: 2.54e7, 3: 1e7}.get(unit_code)
    if per is None:
        return None, None
    nm = per / px_per_unit
    if nm < 1000:  # finer than 1 um/px: a microscope's calibration, not a print resolution (72 dpi ...)
        notes.append(N_("Scale read from TIFF resolution tags."))
        return nm, N_("the TIFF resolution tags")
    return None, None


def _rsciio_tiff_scale(data: bytes, notes: list[Text]) -> tuple[float | None, Text | None]:
    """The pixel size RosettaSciIO's TIFF reader finds in the vendor tags segbot does not parse
    itself (JEOL SightX, Olympus SIS, TVIPS, Hamamatsu, DM-written TIFF). Resolution tags alone it
    leaves alone (a print's dpi is no microscope's scale), so a length here is a vendor's."""
    import tempfile

    try:
        import rsciio.tiff as rsciio_tiff

        with tempfile.NamedTemporaryFile(suffix=".tif") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmp.write(data)
            tmp.flush()
            axes = rsciio_tiff.file_reader(tmp.name, lazy=True)[0]["axes"]
    except Exception:  # noqa: BLE001 - a vendor tag the reader chokes on: just no scale
        return None, None
    x_axis = max(axes, key=lambda a: int(a.get("index_in_array", 0)))  # the columns
    factor = unit_factor(str(x_axis.get("units") or ""))
    value = float(x_axis.get("scale") or 0)
    if not factor or not 0 < value * factor < 1e9 or value == 1.0 and x_axis.get("units") in (None, ""):
        return None, None
    notes.append(N_("Scale read from the TIFF's vendor metadata (RosettaSciIO)."))
    return float(f"{value * factor:.6g}"), N_("the TIFF's vendor metadata (RosettaSciIO)")


def _read_tiff(
    data: bytes, name: str | Text, max_pixels: int, notes: list[Text]
) -> tuple[np.ndarray, float | None, Text | None]:
    import logging

    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)  # corrupt files are reported to the user, not logged as warnings
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = tif.pages
            if len(pages) == 0:
                raise ImageUndecodable(N_("'{name}' is a TIFF without images.", name=name))
            page = pages.first
            depth = max(1, int(getattr(page, "imagedepth", 1) or 1))  # a volume page decodes all slices
            check_pixels(int(page.imagewidth), int(page.imagelength) * depth, max_pixels, name)
            if len(pages) > 1:
                notes.append(NP_("Multi-page TIFF ({n} page): only the first page is used.",
                                 "Multi-page TIFF ({n} pages): only the first page is used.", n=len(pages)))
            try:
                array = page.asarray()
            except ValueError:  # a codec tifffile leaves to imagecodecs (LZW, JPEG): Pillow has them
                array = _read_pillow(data, name, max_pixels)
            scale, source = _tiff_scale(tif, page, notes)
        if scale is None:
            scale, source = _rsciio_tiff_scale(data, notes)
    except (TooManyPixels, ImageUndecodable):
        raise
    except Exception as error:  # noqa: BLE001 - tifffile raises many kinds on corrupt input
        raise ImageUndecodable(N_("'{name}' is not a readable TIFF ({kind}).", name=name,
                                  kind=error.__class__.__name__)) from None
    finally:
        log.setLevel(level)
    while array.ndim > 3 or (
        array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4) and array.shape[0] not in (3, 4)
    ):
        array = array[0]
    return array, scale, source


def _read_pillow(data: bytes, name: str | Text, max_pixels: int) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                check_pixels(img.width, img.height, max_pixels, name)
                if img.format == "JPEG":  # as LabelMe shows it (it applies the EXIF orientation too)
                    from PIL import ImageOps

                    img = ImageOps.exif_transpose(img)
                if img.mode == "P":
                    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    img = img.convert("RGB")
                elif img.mode == "1":
                    img = img.convert("L")
                array = np.asarray(img)
    except TooManyPixels:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooManyPixels(N_("'{name}' declares too many pixels; crop or downscale the image.",
                               name=name)) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many kinds on corrupt input
        raise ImageUndecodable(N_(
            "'{name}' cannot be decoded as an image ({kind}); send a PNG, JPEG, BMP or TIFF file.",
            name=name, kind=error.__class__.__name__,
        )) from None
    return array  # 16-bit ('I;16') and 32-bit ('I', 'F') modes are stretched by to_uint8_rgb


_NUM = re.compile(
    r"^[\s,;]*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?([\s,;]+[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)*[\s,;]*$"
)


def heights_to_grey(
    heights: np.ndarray, name: str | Text, notes: list[Text], *, allow_nan: bool = True
) -> np.ndarray:
    """Eq. (1): I = (H - Hmin) / (Hmax - Hmin) * 255 as uint8 grey; a flat map is refused.

    allow_nan: missing points (NaN, as SPM files mark unscanned lines) become Hmin, with a note."""
    heights = np.asarray(heights, dtype=np.float64)
    finite = np.isfinite(heights)
    if not finite.all():
        if not allow_nan or not finite.any():
            raise BadHeightMap(N_("'{name}' contains NaN or infinite heights.", name=name))
        notes.append(NP_("{n} missing height value shown at the lowest level.",
                         "{n} missing height values shown at the lowest level.", n=int((~finite).sum())))
    lo, hi = float(heights[finite].min()), float(heights[finite].max())
    if hi <= lo:
        raise BadHeightMap(N_("'{name}' is flat (all heights are {height:g}); nothing to see.",
                              name=name, height=lo))
    grey = np.rint((np.where(finite, heights, lo) - lo) / (hi - lo) * 255.0).astype(np.uint8)  # eq. (1)
    notes.append(N_("Height map {width}x{height} converted to 8 bit by eq. 1 (range {lo:g}..{hi:g}).",
                    width=int(heights.shape[1]), height=int(heights.shape[0]), lo=lo, hi=hi))
    return grey


def read_height_map(
    text: str, name: str | Text = "height map", max_pixels: int = DEFAULT_MAX_PIXELS,
    notes: list[Text] | None = None,
) -> tuple[np.ndarray, float | None]:
    """ASCII matrix of heights (optional header lines) -> uint8 grey and nm/px; the grey levels by
    eq. (1) of Okunev et al. (Nanomaterials 2020, ParticlesNN).

    I = (H - Hmin) / (Hmax - Hmin) * 255. A WSxM-style header line `X Amplitude: 100 nm` gives the scale.
    """
    notes = notes if notes is not None else []
    rows: list[list[float]] = []
    header: list[str] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not rows and (stripped.startswith(("#", "%", "/", ";")) or not _NUM.match(stripped)):
            header.append(stripped)
            if len(header) > 200:
                break
            continue
        if not _NUM.match(stripped):
            raise BadHeightMap(N_(
                "'{name}': line {line} is not a row of numbers; expected a plain height matrix.",
                name=name, line=line_no,
            ))
        rows.append([float(v) for v in re.split(r"[\s,;]+", stripped.strip(" ,;\t"))])
        if len(rows) * len(rows[0]) > max_pixels:
            check_pixels(len(rows[0]), len(rows), max_pixels, name)
    if len(rows) < 2:
        raise BadHeightMap(N_("'{name}' holds no height matrix (need at least 2 rows of numbers).",
                              name=name))
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise BadHeightMap(N_(
            "'{name}': rows have different lengths ({shortest}..{longest} values); "
            "export the height map as a full matrix.",
            name=name, shortest=min(widths), longest=max(widths),
        ))
    heights = np.asarray(rows, dtype=np.float64)
    if heights.shape[1] < 2:
        raise BadHeightMap(N_("'{name}' has a single column; expected a height matrix.", name=name))
    check_pixels(heights.shape[1], heights.shape[0], max_pixels, name)
    grey = heights_to_grey(heights, name, notes, allow_nan=False)
    scale = None
    for line in header:
        m = re.search(
            r"x[ _-]*(amplitude|range|size|length)\s*[:=]\s*([-+\d.eE]+)\s*([a-zA-Zµμå]+)", line, re.I
        )
        if m:
            factor = unit_factor(m.group(3))
            try:
                value = float(m.group(2))
            except ValueError:
                continue
            if factor and value > 0:
                scale = value * factor / heights.shape[1]
                notes.append(N_("Scale read from the height map header."))
                break
    return grey, scale


def read_image(
    source: Path | str | bytes,
    name: str | Text | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    info_bar: bool = False,
) -> LoadedImage:
    """Decode an image file (path or bytes) into uint8 RGB; raises imaging.errors subclasses.

    info_bar: also look for an info bar / scale-bar box (flattened SEM exports; runs OCR on a bar's
    label); found ones are listed in `excluded`, and the scale bar gives nm_per_px when the file carries
    no scale of its own. Off unless asked: reading pixels should not start Tesseract.
    `name` is the file as messages show it (a Text for an image without a file name of its own); its
    str() is the file name whose extension may tell a microscope's format.
    """
    if name is None:
        name = Path(source).name if isinstance(source, str | Path) else "image"
    data = _read_source(source, max_bytes, name)
    micro = sniff_microscope(data, str(name))
    if micro is not None:
        return _from_microscope(data, name, micro, max_pixels)  # its own calibration: no info bar
    kind = sniff_kind(data)
    if kind == "text":
        return _from_height_map(data, name, max_pixels)
    notes: list[Text] = []
    scale, scale_source = None, None
    if kind == "tiff":
        array, scale, scale_source = _read_tiff(data, name, max_pixels, notes)
    elif kind in ("png", "jpeg", "bmp"):
        array = _read_pillow(data, name, max_pixels)
    else:
        raise UnknownFileType(N_(
            "'{name}' is not a supported image; send PNG, JPEG, BMP, TIFF, an ASCII height map or the "
            "microscope's own file (DM3/DM4, TIA .ser, EMD, MRC, Gwyddion .gwy, Nanonis .sxm).",
            name=name,
        ))
    loaded = LoadedImage(to_uint8_rgb(array, notes), scale, notes, source_format=kind.upper())
    if scale:
        loaded.scale_source, loaded.scale_confidence = scale_source, 1.0
    if info_bar:
        apply_info_bar(loaded)
    return loaded


def _from_microscope(data: bytes, name: str | Text, micro: tuple[str, str], max_pixels: int) -> LoadedImage:
    got = read_microscope(data, name, micro, max_pixels)
    notes = list(got.notes)
    array = heights_to_grey(got.array, name, notes) if got.is_height else got.array
    loaded = LoadedImage(to_uint8_rgb(array, notes), got.nm_per_px, notes, source_format=got.format_name)
    if got.nm_per_px:
        loaded.scale_source, loaded.scale_confidence = got.scale_source, 1.0
        notes.append(N_("Scale {scale:.4g} nm/px from {source}.", scale=got.nm_per_px,
                        source=got.scale_source))
    return loaded


def _from_height_map(data: bytes, name: str | Text, max_pixels: int) -> LoadedImage:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    notes: list[Text] = []
    grey, scale = read_height_map(text, name, max_pixels, notes)
    loaded = LoadedImage(to_uint8_rgb(grey), scale, notes, source_format="height map")
    if scale:
        loaded.scale_source, loaded.scale_confidence = N_("the height map's header"), 1.0
    return loaded


def apply_info_bar(loaded: LoadedImage) -> None:
    """Record an image's info bar/scale-bar regions on a LoadedImage and, when the file set no scale,
    take the scale bar's."""
    result = analyse(loaded.image)
    loaded.excluded = list(result.regions)
    loaded.notes.extend(result.notes)
    scale = result.scale
    if scale is None:
        return
    loaded.scale_bar = scale
    if loaded.nm_per_px is None:
        loaded.nm_per_px = scale.nm_per_px
        loaded.scale_source = scale.source_text()
        loaded.scale_confidence = scale.confidence
        values = {"scale": scale.nm_per_px, "source": scale.source_text(), "confidence": scale.confidence}
        if scale.sure:
            loaded.notes.append(N_("Scale {scale:.4g} nm/px from {source} (confidence {confidence:.2f}).",
                                   **values))
        else:
            loaded.notes.append(N_("Scale {scale:.4g} nm/px from {source} (confidence {confidence:.2f}; "
                                   "please check it).", **values))
    elif abs(scale.nm_per_px - loaded.nm_per_px) > 0.02 * loaded.nm_per_px:
        loaded.notes.append(N_(
            "The image's own text gives {pixels:.4g} nm/px ({source}); the file's metadata {own:.4g} nm/px "
            "is used.", pixels=scale.nm_per_px, source=scale.source_text(), own=loaded.nm_per_px,
        ))


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 RGB image."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 array
        raise ImageUndecodable(N_("The image could not be encoded as PNG."))
    return buf.tobytes()
