"""Sample microscope files for the reader tests, each made the way its notes say.

- EMD: written by RosettaSciIO itself (its NCEM EMD writer).
- Gwyddion .gwy: written by gwyfile itself (GwyContainer.tofile).
- DM3/DM4, TIA .ser, MRC, Nanonis .sxm: no reader we use writes these, and none of the readers'
  source distributions ships sample files (rosettasciio fetches its test data at test time,
  nanonispy/nanonispy2 ship none), so a minimal file is built here from the format's published
  description:
  * DM3/DM4: the tag-file layout documented by C. Boothroyd and B. Schaffer ("DM3/DM4 file format"):
    big-endian header (version, root length, byte order), tag groups (20) and data tags (21, "%%%%",
    info array, little-endian data); ImageList/ImageData/{Calibrations,Data,DataType,Dimensions}.
  * TIA .ser: "TIA Series File Format" (Boothroyd, FEI): header 0x4949/0x0197/0x0210, a dimension
    array, data and tag offset arrays, a 2-D data element with its X/Y calibration in metres.
  * MRC: the MRC2014 specification (CCP-EM): 1024-byte header, "MAP " stamp at byte 208, cell
    lengths in angstroms.
  * Nanonis .sxm: the Nanonis "SXM file format" help page: ASCII :TAG: header ending :SCANIT_END:,
    then 0x1A 0x04 and big-endian float32 channels (forward, backward).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------ DM3 / DM4


class _DM:
    def __init__(self, version: int) -> None:
        self.v = version

    def n(self, value: int) -> bytes:  # the version-sized big-endian integers of the tag structure
        return struct.pack(">q" if self.v == 4 else ">l", value)

    def data_tag(self, name: str, info: list[int], payload: bytes) -> bytes:
        body = b"%%%%" + self.n(len(info)) + b"".join(self.n(i) for i in info) + payload
        head = b"\x15" + struct.pack(">h", len(name)) + name.encode()
        return head + (struct.pack(">q", len(body)) if self.v == 4 else b"") + body

    def group_tag(self, name: str, children: list[bytes]) -> bytes:
        body = b"\x00\x00" + self.n(len(children)) + b"".join(children)
        head = b"\x14" + struct.pack(">h", len(name)) + name.encode()
        return head + (struct.pack(">q", len(body)) if self.v == 4 else b"") + body

    def f4(self, name: str, value: float) -> bytes:
        return self.data_tag(name, [6], struct.pack("<f", value))

    def i4(self, name: str, value: int) -> bytes:
        return self.data_tag(name, [3], struct.pack("<l", value))

    def text(self, name: str, value: str) -> bytes:  # DM stores strings as arrays of UTF-16 units
        units = value.encode("utf-16-le")
        return self.data_tag(name, [20, 4, len(units) // 2], units)


def dm_bytes(image: np.ndarray, nm_per_px: float | None = 0.52, unit: str = "nm", version: int = 4) -> bytes:
    """A DM3/DM4 file holding one 2-D image (uint16/float32/uint8) or a stack (frames, y, x)."""
    dm = _DM(version)
    image = np.ascontiguousarray(image)
    codes = {np.dtype(np.uint16): (10, 4), np.dtype(np.float32): (2, 6), np.dtype(np.uint8): (6, 10),
             np.dtype(np.int16): (1, 2)}
    data_type, element = codes[image.dtype]
    dims = list(image.shape[::-1])  # DM lists x first
    scale = nm_per_px if nm_per_px is not None else 1.0
    units = unit if nm_per_px is not None else ""
    dimension = [dm.group_tag("", [dm.f4("Origin", 0.0), dm.f4("Scale", scale), dm.text("Units", units)])
                 for _ in dims[:2]]
    dimension += [dm.group_tag("", [dm.f4("Origin", 0.0), dm.f4("Scale", 1.0), dm.text("Units", "")])
                  for _ in dims[2:]]
    calibrations = dm.group_tag("Calibrations", [
        dm.group_tag("Brightness", [dm.f4("Origin", 0.0), dm.f4("Scale", 1.0), dm.text("Units", "")]),
        dm.group_tag("Dimension", dimension),
    ])
    image_data = dm.group_tag("ImageData", [
        calibrations,
        dm.data_tag("Data", [20, element, image.size], image.astype(image.dtype.newbyteorder("<")).tobytes()),
        dm.i4("DataType", data_type),
        dm.group_tag("Dimensions", [dm.i4("", d) for d in dims]),
        dm.i4("PixelDepth", image.dtype.itemsize),
    ])
    entry = dm.group_tag("", [image_data, dm.group_tag("ImageTags", []), dm.text("Name", "sample")])
    root = b"\x01\x00" + dm.n(1) + dm.group_tag("ImageList", [entry])
    head = struct.pack(">l", version) + dm.n(len(root)) + struct.pack(">l", 1)
    return head + root + b"\x00" * 8


# ------------------------------------------------------------------ TIA .ser


def ser_bytes(image: np.ndarray, nm_per_px: float = 0.25) -> bytes:
    """A TIA series with one 2-D image (int32/uint16/float32), calibrated in metres."""
    image = np.ascontiguousarray(image)
    type_code = {np.dtype(np.uint16): 2, np.dtype(np.int32): 6, np.dtype(np.float32): 7}[image.dtype]
    description = b"Number"
    head = struct.pack("<HHHIIII", 0x4949, 0x0197, 0x0210, 0x4122, 0x4152, 1, 1)
    dims = struct.pack("<IddII", 1, 0.0, 1.0, 0, len(description)) + description + struct.pack("<I", 0)
    offsets_at = len(head) + 8 + len(dims)
    data_at = offsets_at + 8
    ny, nx = image.shape
    element = struct.pack("<ddIddIHII", 0.0, nm_per_px * 1e-9, 0, 0.0, nm_per_px * 1e-9, 0, type_code, nx, ny)
    element += np.flipud(image).astype(image.dtype.newbyteorder("<")).tobytes()  # TIA stores bottom up
    tag_at = data_at + len(element)
    out = head + struct.pack("<II", offsets_at, 1) + dims + struct.pack("<II", data_at, tag_at) + element
    return out + struct.pack("<HHI", 0x4152, 0, 0)


# ------------------------------------------------------------------ MRC


def mrc_bytes(image: np.ndarray, angstrom_per_px: float = 2.5) -> bytes:
    """An MRC2014 file with one float32 image (or a stack: frames, y, x)."""
    stack = np.asarray(image, dtype="<f4")
    if stack.ndim == 2:
        stack = stack[None]
    nz, ny, nx = stack.shape
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, 2)  # mode 2: float32
    struct.pack_into("<3i", header, 28, nx, ny, nz)  # mx, my, mz
    struct.pack_into("<3f", header, 40, nx * angstrom_per_px, ny * angstrom_per_px, nz * angstrom_per_px)
    struct.pack_into("<3f", header, 52, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    struct.pack_into("<3f", header, 76, float(stack.min()), float(stack.max()), float(stack.mean()))
    struct.pack_into("<i", header, 88, 1)  # ispg
    struct.pack_into("<i", header, 108, 20140)  # nversion
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"  # little endian
    return bytes(header) + stack.tobytes()


# ------------------------------------------------------------------ Nanonis .sxm


def sxm_bytes(heights_m: np.ndarray, range_nm: tuple[float, float] = (32.0, 24.0)) -> bytes:
    """A Nanonis scan with one Z channel (forward and backward), heights in metres."""
    ny, nx = heights_m.shape
    header = "\n".join([
        ":NANONIS_VERSION:", "2",
        ":SCANIT_TYPE:", "              FLOAT            MSBFIRST",
        ":REC_DATE:", " 01.12.2026",
        ":REC_TIME:", "10:00:00",
        ":SCAN_PIXELS:", f"       {nx}       {ny}",
        ":SCAN_TIME:", "             1.000E+0             1.000E+0",
        ":SCAN_RANGE:", f"           {range_nm[0] * 1e-9:.6E}           {range_nm[1] * 1e-9:.6E}",
        ":SCAN_OFFSET:", "             0.000000E+0         0.000000E+0",
        ":SCAN_ANGLE:", "            0.000E+0",
        ":SCAN_DIR:", "down",
        ":BIAS:", "            1.000E-1",
        ":ACQ_TIME:", "       100.0",
        ":DATA_INFO:",
        "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset",
        "\t14\tZ\tm\tboth\t1.000E+0\t0.000E+0",
        "",
        ":SCANIT_END:",
        "", "", "",  # the end tag's line, then two empty lines, then 0x1A 0x04
    ]).encode("ascii")
    forward = np.asarray(heights_m, dtype=">f4")
    backward = forward[:, ::-1]
    return header + b"\x1a\x04" + forward.tobytes() + backward.tobytes()


# ------------------------------------------------------------------ written by the libraries


def gwy_bytes(heights_m: np.ndarray, width_nm: float = 50.0, channels: int = 1) -> bytes:
    """A Gwyddion file written by gwyfile: `channels` height fields, the first being `heights_m`."""
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    ny, nx = heights_m.shape
    container = GwyContainer()
    for k in range(channels):
        data = np.asarray(heights_m if k == 0 else heights_m[::-1], dtype=np.float64)
        container[f"/{k}/data"] = GwyDataField(data, xreal=width_nm * 1e-9, yreal=width_nm * 1e-9 * ny / nx,
                                               si_unit_xy=GwySIUnit(unitstr="m"),
                                               si_unit_z=GwySIUnit(unitstr="m"))
        container[f"/{k}/data/title"] = "Height" if k == 0 else f"Channel {k}"
    buf = io.BytesIO()
    container.tofile(buf)
    return buf.getvalue()


def emd_file(path: Path, image: np.ndarray, nm_per_px: float = 0.8, last: str = "nm") -> Path:
    """An NCEM EMD file written by RosettaSciIO's own writer: a 2-D image, or 3-D data whose last
    axis is in `last` units ("eV": a spectrum image (y, x, energy); "frame": a stack (frame, y, x))."""
    from rsciio.emd import file_writer

    def axis(name: str, size: int, scale: float, units: str) -> dict:
        return {"name": name, "size": size, "scale": scale, "offset": 0.0, "units": units, "navigate": False}

    if image.ndim == 2:
        ny, nx = image.shape
        axes = [axis("y", ny, nm_per_px, "nm"), axis("x", nx, nm_per_px, "nm")]
    elif last == "eV":
        ny, nx, ne = image.shape
        axes = [axis("y", ny, nm_per_px, "nm"), axis("x", nx, nm_per_px, "nm"), axis("E", ne, 10.0, "eV")]
    else:
        nf, ny, nx = image.shape
        axes = [axis("frame", nf, 1.0, ""), axis("y", ny, nm_per_px, "nm"), axis("x", nx, nm_per_px, "nm")]
    file_writer(str(path), {"data": image, "axes": axes, "metadata": {"General": {"title": "sample"},
                                                                      "Signal": {"signal_type": ""}},
                            "original_metadata": {}})
    return path
