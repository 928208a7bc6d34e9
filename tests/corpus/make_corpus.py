"""Regenerate the bad-input corpus: `python tests/corpus/make_corpus.py`.

Every file here must be refused by annotations with exactly the error code in manifest.json.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def png_bytes(w: int = 64, h: int = 48) -> bytes:
    img = (np.indices((h, w)).sum(axis=0) % 256).astype(np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def bomb_png(w: int = 20000, h: int = 20000) -> bytes:
    """A valid PNG header declaring w x h pixels with almost no data (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def doc(
    shapes: list, *, image: bytes | None = None, path: str = "img.png", h: int = 48, w: int = 64, **extra
) -> dict:
    out = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": path,
        "imageData": b64(png_bytes() if image is None else image),
        "imageHeight": h,
        "imageWidth": w,
    }
    out.update(extra)
    return out


def poly(label: str = "particle", pts=None, shape_type: str = "polygon", **extra) -> dict:
    pts = [[10, 10], [20, 10], [20, 20], [10, 20]] if pts is None else pts
    out = {
        "label": label,
        "points": pts,
        "group_id": None,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
    }
    out.update(extra)
    return out


def mask_png(h: int, w: int) -> str:
    return b64(cv2.imencode(".png", np.full((h, w), 255, np.uint8))[1].tobytes())


ENTRIES: list[tuple[str, str, str, object, dict]] = []  # (file, code, reader, content, extra manifest keys)


def add(name: str, code: str, content, reader: str = "labelme", why: str = "", **extra) -> None:
    ENTRIES.append((name, code, reader, content, {"why": why, **extra}))


add("not_json_text.json", "not_json", b"hello, this is not json\n", why="plain text")
add("not_json_truncated.json", "not_json", json.dumps(doc([poly()]))[:120].encode(), why="cut-off JSON")
add("not_json_binary.json", "not_json", png_bytes(), why="a PNG renamed to .json")
add("not_json_empty.json", "not_json", b"", why="empty file")
add("not_json_utf16.json", "not_json", json.dumps(doc([poly()])).encode("utf-16"), why="UTF-16 text")
add("not_labelme_list.json", "not_labelme", b"[1, 2, 3]", why="JSON array")
add(
    "not_labelme_coco.json",
    "not_labelme",
    json.dumps({"images": [], "annotations": [], "categories": []}).encode(),
    why="a COCO file",
)
add(
    "not_labelme_shapes_dict.json",
    "not_labelme",
    json.dumps({"shapes": {}, "imagePath": "a.png"}).encode(),
    why="shapes is not a list",
)
add(
    "not_labelme_shape_not_object.json",
    "not_labelme",
    json.dumps(doc(["particle"])).encode(),
    why="a shape that is a string",
)
add(
    "image_missing_no_data.json",
    "image_missing",
    json.dumps(doc([poly()]) | {"imageData": None, "imagePath": ""}).encode(),
    why="neither imageData nor imagePath",
)
add(
    "image_missing_not_sent.json",
    "image_missing",
    json.dumps(doc([poly()]) | {"imageData": None, "imagePath": "not_sent_along.png"}).encode(),
    why="imagePath to a file that is not there",
)
add(
    "image_undecodable_base64.json",
    "image_undecodable",
    json.dumps(doc([poly()]) | {"imageData": "!!!notbase64"}).encode(),
    why="imageData is not base64",
)
add(
    "image_undecodable_truncated_png.json",
    "image_undecodable",
    json.dumps(doc([poly()], image=png_bytes()[:60])).encode(),
    why="embedded PNG cut short",
)
add(
    "unknown_file_type_embedded_gif.json",
    "unknown_file_type",
    json.dumps(doc([poly()], image=b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")).encode(),
    why="embedded GIF",
)
add(
    "image_size_mismatch.json",
    "image_size_mismatch",
    json.dumps(doc([poly()], h=480, w=640)).encode(),
    why="imageHeight/imageWidth differ from the image",
)
add(
    "bad_polygon_two_points.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[[1, 1], [5, 5]])])).encode(),
    why="polygon with 2 points",
)
add(
    "bad_polygon_collinear.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[[1, 1], [5, 5], [9, 9]])])).encode(),
    why="zero-area polygon",
)
add(
    "bad_polygon_nan.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[[1, 1], [float("nan"), 5], [9, 1]])])).encode(),
    why="NaN coordinate",
)
add(
    "bad_polygon_strings.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[["a", "b"], ["c", "d"], ["e", "f"]])])).encode(),
    why="points are strings",
)
add(
    "bad_polygon_triples.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[[1, 1, 0], [5, 5, 0], [9, 1, 0]])])).encode(),
    why="points with 3 numbers",
)
add(
    "bad_rectangle_zero_width.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[[5, 5], [5, 20]], shape_type="rectangle")])).encode(),
    why="flat rectangle",
)
add(
    "bad_circle_zero_radius.json",
    "bad_polygon",
    json.dumps(doc([poly(pts=[[5, 5], [5, 5]], shape_type="circle")])).encode(),
    why="circle of radius 0",
)
add(
    "shape_outside_image.json",
    "shape_outside_image",
    json.dumps(doc([poly(pts=[[1000, 1000], [1010, 1000], [1010, 1010]])])).encode(),
    why="polygon off the image",
)
add(
    "shape_outside_negative.json",
    "shape_outside_image",
    json.dumps(doc([poly(pts=[[-30, -30], [-20, -30], [-20, -20]])])).encode(),
    why="negative coordinates",
)
add(
    "crop_outside_image.json",
    "shape_outside_image",
    json.dumps(doc([poly(), poly("crop", [[100, 100], [200, 200]], "rectangle")])).encode(),
    why="crop off the image",
)
add(
    "empty_crop.json",
    "empty_crop",
    json.dumps(doc([poly(), poly("Crop", [[30, 30], [60, 45]], "rectangle")])).encode(),
    why="crop without objects (objects elsewhere)",
)
add(
    "empty_crop_only_crop.json",
    "empty_crop",
    json.dumps(doc([poly("CROP", [[0, 0], [30, 30]], "rectangle")])).encode(),
    why="only a crop",
)
add(
    "too_many_pixels_embedded.json",
    "too_many_pixels",
    json.dumps(doc([poly()], image=bomb_png())).encode(),
    why="embedded 20000x20000 PNG bomb",
)
add(
    "file_too_large.json",
    "file_too_large",
    json.dumps(doc([poly()] * 1)).encode(),
    max_bytes=256,
    why="over the byte limit given as max_bytes",
)
add(
    "unsafe_path_dotdot.json",
    "unsafe_image_path",
    json.dumps(doc([poly()]) | {"imageData": None, "imagePath": "../../etc/secret.png"}).encode(),
    why="'..'",
)
add(
    "unsafe_path_absolute.json",
    "unsafe_image_path",
    json.dumps(doc([poly()]) | {"imageData": None, "imagePath": "/etc/passwd"}).encode(),
    why="absolute path",
)
add(
    "unsafe_path_windows.json",
    "unsafe_image_path",
    json.dumps(doc([poly()]) | {"imageData": None, "imagePath": "C:\\Users\\me\\img.png"}).encode(),
    why="Windows absolute path",
)
add(
    "unsafe_path_backslash_dotdot.json",
    "unsafe_image_path",
    json.dumps(doc([poly()]) | {"imageData": None, "imagePath": "..\\images\\img.png"}).encode(),
    why="'..' with backslashes",
)
add(
    "unknown_shape_type.json",
    "unknown_shape_type",
    json.dumps(doc([poly(shape_type="hexagon")])).encode(),
    why="shape_type hexagon",
)
add(
    "duplicate_id.json",
    "duplicate_id",
    json.dumps(
        doc([poly(group_id=7), poly("single_site", [[30, 30], [40, 30], [40, 40]], group_id=7)])
    ).encode(),
    why="one group_id on two classes",
)
add("bad_label_empty.json", "bad_label", json.dumps(doc([poly(label="")])).encode(), why="empty label")
add("bad_label_number.json", "bad_label", json.dumps(doc([poly(label=5)])).encode(), why="label is a number")
add(
    "bad_mask_data.json",
    "bad_mask",
    json.dumps(doc([poly(pts=[[10, 10], [19, 19]], shape_type="mask", mask="AAAA")])).encode(),
    why="mask that is no PNG",
)
add(
    "bad_mask_size.json",
    "bad_mask",
    json.dumps(doc([poly(pts=[[10, 10], [19, 19]], shape_type="mask", mask=mask_png(3, 3))])).encode(),
    why="mask smaller than its box",
)
add(
    "bad_mask_missing.json",
    "bad_mask",
    json.dumps(doc([poly(pts=[[10, 10], [19, 19]], shape_type="mask")])).encode(),
    why="mask shape without mask",
)
add("bad_scale.json", "bad_scale", json.dumps(doc([poly()], nm_per_px=-2)).encode(), why="negative nm_per_px")
# plain files for read_image
add(
    "image_not_an_image.png",
    "unknown_file_type",
    b"hello there, no image here",
    reader="image",
    why="text named .png",
)
add("image_truncated.png", "image_undecodable", png_bytes()[:70], reader="image", why="PNG cut short")
add("image_bomb.png", "too_many_pixels", bomb_png(), reader="image", why="20000x20000 PNG header")
add("image_empty.png", "empty_file", b"", reader="image", why="0 bytes")
add("image_bad_tiff.tif", "image_undecodable", b"II*\x00" + b"\xff" * 64, reader="image", why="broken TIFF")
add("height_map_flat.txt", "bad_height_map", b"1 1 1\n1 1 1\n1 1 1\n", reader="image", why="flat height map")
add("height_map_ragged.txt", "bad_height_map", b"1 2 3\n4 5\n6 7 8\n", reader="image", why="ragged rows")


def main() -> None:
    manifest = []
    for name, code, reader, content, extra in ENTRIES:
        (HERE / name).write_bytes(content)
        manifest.append({"file": name, "code": code, "reader": reader, **extra})
    (HERE / "manifest.json").write_text(json.dumps({"files": manifest}, indent=1) + "\n")
    print(f"{len(manifest)} files")


if __name__ == "__main__":
    main()
