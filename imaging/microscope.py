"""What microscopes write, read through the formats' own well-kept readers.

- RosettaSciIO (`rsciio`): Digital Micrograph .dm3/.dm4, TIA .ser/.emi, .emd (NCEM/Velox), .mrc
  and its other 2-D image formats (Blockfile, TVIPS, Semper, Phenom, HSPY, PantaRhei, DigitalSurf).
- `gwyfile`: Gwyddion .gwy (AFM/STM height channels).
- `nanonispy2`: Nanonis .sxm (STM/AFM scans). The original nanonispy no longer imports on NumPy >= 1.24
  (it calls np.float); nanonispy2 is its maintained fork, same API.

A format is recognised by its magic bytes where it has some (DM, TIA, HDF5, Gwyddion, Nanonis, MRC's
"MAP " stamp), else by the file's extension. The pixel size comes from the file's own calibration, with
its unit converted to nm. Height channels (.gwy, .sxm, DigitalSurf) go through eq. (1) like the ASCII
height maps. A file with several images, frames or a spectrum gives its first 2-D image, with a note.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.i18n import N_, NP_, Text
from imaging.errors import ImageUndecodable, TooManyPixels, UnknownFileType
from imaging.limits import check_pixels
from imaging.units import unit_factor

# extension -> (format key, human name)
FORMATS: dict[str, tuple[str, str]] = {
    ".dm3": ("dm", "DM3"),
    ".dm4": ("dm", "DM4"),
    ".ser": ("tia", "TIA .ser"),
    ".emi": ("tia_emi", "TIA .emi"),
    ".emd": ("emd", "EMD"),
    ".mrc": ("mrc", "MRC"),
    ".ali": ("mrc", "MRC"),
    ".mrcz": ("mrcz", "MRCZ"),
    ".blo": ("blockfile", "Blockfile"),
    ".tvips": ("tvips", "TVIPS"),
    ".unf": ("semper", "Semper"),
    ".elid": ("phenom", "Phenom ELID"),
    ".hspy": ("hspy", "HyperSpy HSPY"),
    ".prz": ("pantarhei", "PantaRhei"),
    ".sur": ("digitalsurf", "DigitalSurf"),
    ".pro": ("digitalsurf", "DigitalSurf"),
    ".gwy": ("gwy", "Gwyddion"),
    ".sxm": ("sxm", "Nanonis SXM"),
}
MICROSCOPE_SUFFIXES = tuple(FORMATS)

# format key -> rsciio plugin module
_RSCIIO = {
    "dm": "rsciio.digitalmicrograph",
    "tia": "rsciio.tia",
    "emd": "rsciio.emd",
    "mrc": "rsciio.mrc",
    "mrcz": "rsciio.mrcz",
    "blockfile": "rsciio.blockfile",
    "tvips": "rsciio.tvips",
    "semper": "rsciio.semper",
    "phenom": "rsciio.phenom",
    "hspy": "rsciio.hspy",
    "pantarhei": "rsciio.pantarhei",
    "digitalsurf": "rsciio.digitalsurf",
}
HEIGHT_FORMATS = {"gwy", "sxm", "digitalsurf"}
_HDF5 = b"\x89HDF\r\n\x1a\n"


@dataclass
class MicroscopeImage:
    array: np.ndarray  # 2-D (or H x W x 3), any numeric dtype
    nm_per_px: float | None
    scale_source: Text | None  # "the DM4 file's calibration", for notes in the user's language
    is_height: bool
    format_name: str
    notes: list[Text] = field(default_factory=list)


def sniff_microscope(data: bytes, name: str) -> tuple[str, str] | None:
    """(format key, human name) of a microscope file, from its magic bytes or else its extension."""
    suffix = Path(name).suffix.lower()
    by_suffix = FORMATS.get(suffix)
    head = data[:16]
    if head[:4] in (b"\x00\x00\x00\x03", b"\x00\x00\x00\x04") and len(data) > 24:
        flag_at = 8 if head[3] == 3 else 12  # after the version and the root length (4 or 8 bytes)
        if data[flag_at : flag_at + 4] in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01"):
            return ("dm", f"DM{head[3]}")
    if head[:4] == b"II\x97\x01":
        return ("tia", "TIA .ser")
    if head[:4] == b"GWYP":
        return ("gwy", "Gwyddion")
    if data.lstrip()[:17] == b":NANONIS_VERSION:":
        return ("sxm", "Nanonis SXM")
    if head[:8] == _HDF5:
        if by_suffix and by_suffix[0] in ("emd", "hspy"):
            return by_suffix
        return None  # HDF5 of another kind: not an image we know
    if len(data) >= 1024 and data[208:212] == b"MAP " and (by_suffix is None or by_suffix[0] == "mrc"):
        return ("mrc", "MRC")
    return by_suffix


def _nm_factor(unit) -> float | None:
    if unit is None:
        return None
    text = str(unit).strip()
    if not text or text.startswith("<"):
        return None
    return unit_factor(text)


# ------------------------------------------------------------------ rsciio


def _signal_axes(signal: dict) -> tuple[list[dict], list[dict]]:
    axes = sorted(signal.get("axes") or [], key=lambda a: int(a.get("index_in_array", 0)))
    nav = [a for a in axes if a.get("navigate") is True]
    sig = [a for a in axes if a.get("navigate") is not True]
    return nav, sig


def _is_length(axis: dict) -> bool:
    return _nm_factor(axis.get("units")) is not None


def _kind(signal: dict) -> str | None:
    """'image' (a 2-D image or a stack of them), 'spectrum image', or None (spectra, line scans)."""
    data = signal.get("data")
    ndim = getattr(data, "ndim", 0)
    if ndim < 2:
        return None
    nav, sig = _signal_axes(signal)
    if len(sig) == 2 or ndim == 2:
        return "image"
    if ndim == 3 and len(sig) == 1 and len(nav) == 2:
        return "spectrum image"
    axes = sorted(signal.get("axes") or [], key=lambda a: int(a.get("index_in_array", 0)))
    lengths = [_is_length(a) for a in axes]
    if ndim == 3 and lengths == [True, True, False]:
        return "spectrum image"  # a reader that does not say which axes navigate (NCEM EMD): by units
    return "image" if ndim >= 3 else None


def _pick_image(signals: list[dict], fmt: str, name: str | Text, notes: list[Text]):
    """(signal, kind) of the first 2-D image: 'image' (maybe a stack) or 'spectrum image'."""
    images, spectrum_images = [], []
    for signal in signals:
        kind = _kind(signal)
        if kind == "image":
            images.append(signal)
        elif kind == "spectrum image":
            spectrum_images.append(signal)
    if images:
        chosen, kind = images[0], "image"
        if len(signals) > 1:
            notes.append(NP_("The {fmt} file holds {n} dataset: the first 2-D image is used.",
                             "The {fmt} file holds {n} datasets: the first 2-D image is used.",
                             fmt=fmt, n=len(signals)))
        return chosen, kind
    if spectrum_images:
        if len(signals) > 1:
            notes.append(NP_("The {fmt} file holds {n} dataset: the first spectrum image is used.",
                             "The {fmt} file holds {n} datasets: the first spectrum image is used.",
                             fmt=fmt, n=len(signals)))
        return spectrum_images[0], "spectrum image"
    raise ImageUndecodable(N_(
        "'{name}' is a {fmt} file without a 2-D image (only spectra or line scans); send an image.",
        name=name, fmt=fmt,
    ))


def _rsciio_signals(module: str, path: Path) -> list[dict]:
    import importlib

    reader = importlib.import_module(module).file_reader
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return list(reader(str(path), lazy=True))
        except TypeError:  # a reader without lazy loading
            return list(reader(str(path)))


def _read_rsciio(key: str, fmt: str, path: Path, name: str | Text, max_pixels: int, notes: list[Text]):
    signals = _rsciio_signals(_RSCIIO[key], path)
    if not signals:
        raise ImageUndecodable(N_("'{name}' is a {fmt} file without data.", name=name, fmt=fmt))
    signal, kind = _pick_image(signals, fmt, name, notes)
    data = signal["data"]
    nav, sig = _signal_axes(signal)
    axes = sorted(signal.get("axes") or [], key=lambda a: int(a.get("index_in_array", 0)))
    if kind == "spectrum image":
        if len(nav) != 2:
            nav = axes[:2]
        ny, nx = (int(s) for s in data.shape[:2])
        check_pixels(nx, ny, max_pixels, name)
        if int(np.prod(data.shape)) > 4 * max_pixels:
            raise TooManyPixels(N_("'{name}': the spectrum image is too large to sum ({shape}).",
                                   name=name, shape=str(data.shape)))
        array = np.asarray(data.sum(axis=-1))
        notes.append(NP_("Spectrum image {width}x{height} x {n} channel: the total-intensity map is used.",
                         "Spectrum image {width}x{height} x {n} channels: the total-intensity map is used.",
                         width=nx, height=ny, n=int(data.shape[-1])))
        x_axis, y_axis = nav[-1], nav[-2]
    else:
        if data.ndim > 2:  # a stack or series of images: the first frame
            extra = data.shape[:-2]
            frames = int(np.prod(extra))
            ny, nx = int(data.shape[-2]), int(data.shape[-1])
            check_pixels(nx, ny, max_pixels, name)
            data = data[(0,) * len(extra)]
            if frames > 1:
                notes.append(NP_("The {fmt} file holds {n} frame ({dims}): the first is used.",
                                 "The {fmt} file holds {n} frames ({dims}): the first is used.",
                                 fmt=fmt, n=frames, dims="x".join(map(str, extra))))
        else:
            ny, nx = int(data.shape[0]), int(data.shape[1])
            check_pixels(nx, ny, max_pixels, name)
        array = np.asarray(data)
        if array.dtype.names:  # DM RGB(A) records
            array = np.stack([array[c] for c in ("R", "G", "B")], axis=-1)
        sig_axes = sig if len(sig) == 2 else axes[-2:]
        x_axis, y_axis = (sig_axes[-1], sig_axes[-2]) if len(sig_axes) == 2 else ({}, {})
    if np.iscomplexobj(array):
        array = np.abs(array)
        notes.append(N_("Complex data: its modulus is shown."))
    nm, source = _axis_scale(x_axis, y_axis, fmt, notes)
    return array, nm, source


def _axis_scale(x_axis: dict, y_axis: dict, fmt: str, notes: list[Text]) -> tuple[float | None, Text | None]:
    unit = x_axis.get("units")
    scale = x_axis.get("scale")
    text = str(unit or "").strip()
    if "/" in text or text.startswith("1"):  # reciprocal space (diffraction)
        notes.append(N_("The {fmt} calibration is in {unit} (reciprocal space): no pixel size taken.",
                        fmt=fmt, unit=text))
        return None, None
    factor = _nm_factor(unit)
    try:
        value = float(scale)
    except (TypeError, ValueError):
        return None, None
    if not factor or not np.isfinite(value) or value <= 0:
        if text or (value and value != 1.0):
            notes.append(N_(
                "The {fmt} file's calibration ({value:g} {unit}) is not a length: no pixel size taken.",
                fmt=fmt, value=value, unit=text or N_("no unit"),
            ))
        return None, None
    nm = float(f"{value * factor:.6g}")  # DM stores the scale as float32: no 0.5199999809
    try:
        y_nm = float(y_axis.get("scale")) * (_nm_factor(y_axis.get("units")) or 0)
    except (TypeError, ValueError):
        y_nm = 0.0
    if y_nm > 0 and abs(y_nm - nm) > 0.01 * nm:
        notes.append(N_("Pixels are not square ({x:.4g} x {y:.4g} nm): the x size is used.", x=nm, y=y_nm))
    if not 1e-6 < nm < 1e9:
        notes.append(N_("The {fmt} calibration ({scale:g} nm/px) is implausible: not used.",
                        fmt=fmt, scale=nm))
        return None, None
    return nm, N_("the {fmt} file's calibration", fmt=fmt)


# ------------------------------------------------------------------ Gwyddion, Nanonis


def _read_gwy(data: bytes, name: str | Text, max_pixels: int, notes: list[Text]):
    import gwyfile

    container = gwyfile.objects.GwyObject.fromfile(io.BytesIO(data))
    channels = sorted(gwyfile.util.find_datafields(container), key=lambda c: c[0])
    if not channels:
        raise ImageUndecodable(N_("'{name}' is a Gwyddion file without an image channel.", name=name))
    number, title = channels[0]
    field_ = container[f"/{number}/data"]
    xres, yres = int(field_["xres"]), int(field_["yres"])
    check_pixels(xres, yres, max_pixels, name)
    heights = np.asarray(field_.data, dtype=np.float64).reshape(yres, xres)
    if len(channels) > 1:
        notes.append(NP_("Gwyddion file with {n} channel: the first ('{title}') is used.",
                         "Gwyddion file with {n} channels: the first ('{title}') is used.",
                         n=len(channels), title=str(title)))
    unit = field_.get("si_unit_xy")
    unit_text = unit.get("unitstr", "m") if unit is not None else "m"
    factor = _nm_factor(unit_text or "m")
    xreal = float(field_.get("xreal", 0) or 0)
    nm = xreal * factor / xres if factor and xreal > 0 else None
    return heights, nm, N_("the Gwyddion file's calibration") if nm else None


def _read_sxm(path: Path, name: str | Text, max_pixels: int, notes: list[Text]):
    import nanonispy2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan = nanonispy2.read.Scan(str(path))
    header = scan.header
    nx, ny = (int(v) for v in header["scan_pixels"])
    check_pixels(nx, ny, max_pixels, name)
    channels = list(scan.signals)
    if not channels:
        raise ImageUndecodable(N_("'{name}' is a Nanonis scan without channels.", name=name))
    first = channels[0]
    heights = np.asarray(scan.signals[first]["forward"], dtype=np.float64)
    if str(header.get("scan_dir", "")).strip().lower() == "up":
        heights = heights[::-1]  # recorded bottom to top: show it as the microscope does
    if len(channels) > 1:
        notes.append(NP_("Nanonis scan with {n} channel: the first ('{first}', forward) is used.",
                         "Nanonis scan with {n} channels: the first ('{first}', forward) is used.",
                         n=len(channels), first=str(first)))
    x_range = float(np.asarray(header["scan_range"], dtype=np.float64)[0])
    nm = x_range * 1e9 / nx if x_range > 0 else None
    return heights, nm, N_("the Nanonis file's scan range") if nm else None


# ------------------------------------------------------------------ entry point


def read_microscope(data: bytes, name: str | Text, kind: tuple[str, str], max_pixels: int) -> MicroscopeImage:
    """Decode one microscope file; raises imaging.errors subclasses, nothing else. `name`: the file as
    messages show it (its str() is the file name)."""
    key, fmt = kind
    notes: list[Text] = []
    if key == "tia_emi":
        raise UnknownFileType(N_(
            "'{name}' is a TIA .emi file: it only describes the series. Send the .ser file that holds "
            "the image (…_1.ser).", name=name,
        ))
    log = logging.getLogger("rsciio")
    level = log.level
    log.setLevel(logging.CRITICAL)  # corrupt files are reported to the user, not logged
    try:
        with tempfile.TemporaryDirectory(prefix="segbot-micro-") as tmp:
            suffix = Path(str(name)).suffix.lower()
            if FORMATS.get(suffix, (None,))[0] != key:
                suffix = next(s for s, (k, _) in FORMATS.items() if k == key)
            path = Path(tmp) / f"upload{suffix}"  # the readers pick their parser by extension
            path.write_bytes(data)
            if key == "gwy":
                array, nm, source = _read_gwy(data, name, max_pixels, notes)
            elif key == "sxm":
                array, nm, source = _read_sxm(path, name, max_pixels, notes)
            else:
                array, nm, source = _read_rsciio(key, fmt, path, name, max_pixels, notes)
    except (TooManyPixels, ImageUndecodable, UnknownFileType):
        raise
    except ImportError as error:  # pragma: no cover - an install without the reader
        raise UnknownFileType(N_("'{name}': reading {fmt} files needs {module}, not installed here.",
                                 name=name, fmt=fmt, module=str(error.name))) from None
    except Exception as error:  # noqa: BLE001 - the readers raise many kinds on corrupt input
        raise ImageUndecodable(N_(
            "'{name}' is not a readable {fmt} file ({kind}); send the file as the microscope saved it.",
            name=name, fmt=fmt, kind=error.__class__.__name__,
        )) from None
    finally:
        log.setLevel(level)
    array = np.asarray(array)
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ImageUndecodable(N_("'{name}': the {fmt} image has an unusable shape {shape}.",
                                  name=name, fmt=fmt, shape=str(array.shape)))
    return MicroscopeImage(array, nm, source, key in HEIGHT_FORMATS, fmt, notes)
