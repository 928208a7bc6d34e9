"""Incoming files without Telegram: what kind a file is, zip expansion with limits, LabelMe
validation and storage of accepted uploads. Everything here is blocking and runs in threads."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from annotations.crops import format_summary
from bot.services import Services, UserInfo
from core.errors import InputError
from core.i18n import Text, render
from imaging.errors import ImageMissing
from imaging.images import IMAGE_SUFFIXES, LoadedImage, read_image
from imaging.infobar import ASK_BELOW
from imaging.microscope import sniff_microscope
from intake.labels import basename, keep_labels
from storage.models import Upload

IMAGE_EXT = IMAGE_SUFFIXES  # every name imaging.images.read_image takes, microscope files too
ZIP_MAX_ENTRIES = 200


@dataclass
class Incoming:
    name: str
    data: bytes
    photo: bool = False  # a compressed Telegram photo


@dataclass
class Accepted:
    upload_id: int
    name: str
    summary_text: str
    correction_of: dict[str, Any] | None = None  # {"result_id", "image_name", "n"}


@dataclass
class LabelsOutcome:
    accepted: list[Accepted] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason in the user's language)
    need_image: list[tuple[str, str, bytes]] = field(default_factory=list)  # (json name, image name, json)
    used_images: set[str] = field(default_factory=set)
    pending_count: int = 0


def kind_of(name: str, data: bytes) -> str:
    """'json' | 'zip' | 'image' | 'unknown': a .json name is meant as labels (its reader says what is
    wrong with it); otherwise the content decides, then the name. A microscope's own file (DM3/DM4,
    TIA, EMD, MRC, Gwyddion, Nanonis ...) is an image, also a PantaRhei .prz, which is a zip inside."""
    head = data[:16]
    lower = name.lower()
    if lower.endswith(".json"):
        return "json"
    if sniff_microscope(data, name) is not None:
        return "image"
    if head.startswith(b"PK\x03\x04") or lower.endswith(".zip"):
        return "zip"
    if head.startswith((b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*", b"BM", b"GIF8")) or (
        head.startswith(b"RIFF") and data[8:12] == b"WEBP"
    ):
        return "image"
    if lower.endswith(".json") or data.lstrip()[:1] == b"{":
        return "json"
    if lower.endswith(IMAGE_EXT):
        return "image"
    return "unknown"


def expand_zip(name: str, data: bytes, max_total: int) -> list[Incoming]:
    """The usable members of a zip (base names only, never paths), with size and count limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise ValueError(str(error) or "damaged archive") from None
    members = [
        m
        for m in archive.infolist()
        if not m.is_dir() and "__MACOSX" not in m.filename and not basename(m.filename).startswith(".")
    ]
    if len(members) > ZIP_MAX_ENTRIES:
        raise ValueError(f"more than {ZIP_MAX_ENTRIES} files")
    if sum(m.file_size for m in members) > max_total:
        raise ValueError(f"unpacks to more than {max_total // 2**20} MB")
    out: list[Incoming] = []
    for member in members:
        if member.flag_bits & 0x1:
            raise ValueError("encrypted archives are not supported")
        try:
            content = archive.read(member)
        except (zipfile.BadZipFile, OSError, NotImplementedError) as error:
            raise ValueError(f"{basename(member.filename)}: {error}") from None
        out.append(Incoming(basename(member.filename), content))
    return out


def sort_incoming(
    items: list[Incoming], max_zip_total: int
) -> tuple[list[Incoming], list[Incoming], list[tuple[str, dict[str, Any]]]]:
    """(LabelMe files, images, problems as (text key, values)); zips are opened, their usable members
    sorted like files sent one by one."""
    jsons: list[Incoming] = []
    images: list[Incoming] = []
    problems: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        kind = kind_of(item.name, item.data)
        if kind == "zip":
            try:
                members = expand_zip(item.name, item.data, max_zip_total)
            except ValueError as error:
                problems.append(("zip_bad", {"name": item.name, "reason": str(error)}))
                continue
            kinds = [(kind_of(m.name, m.data), m) for m in members]
            usable = [(k, m) for k, m in kinds if k in ("json", "image")]
            if not usable:
                problems.append(("zip_empty", {"name": item.name}))
            for k, m in usable:
                (jsons if k == "json" else images).append(m)
        elif kind == "json":
            jsons.append(item)
        elif kind == "image":
            images.append(item)
        else:
            problems.append(("unknown_type", {"name": item.name}))
    return jsons, images, problems


def image_path_of(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # the reader has said what is wrong with such a file
        return None
    path = doc.get("imagePath") if isinstance(doc, dict) else None
    return basename(path) if isinstance(path, str) and path.strip() else None


def process_labels(
    services: Services, user: UserInfo, jsons: list[Incoming], images: dict[str, bytes], lang: str
) -> LabelsOutcome:
    """Validate LabelMe files; keep the good ones in the user's pending training set (intake.labels,
    the path the Mini App's saved corrections take too). Refusals and summaries (with the reader's
    notes) are rendered in `lang`."""
    outcome = LabelsOutcome()
    for item in jsons:
        try:
            kept = keep_labels(services.settings, services.store, user.id, item.name, item.data, images)
        except InputError as error:
            wanted = image_path_of(item.data)
            if isinstance(error, ImageMissing) and wanted:
                outcome.need_image.append((item.name, wanted, item.data))
            else:
                outcome.errors.append((item.name, render(lang, error.text)))
            continue
        if kept.used_image:
            outcome.used_images.add(kept.used_image)
        text = format_summary(kept.summary, lang=lang)
        outcome.accepted.append(Accepted(kept.upload_id, item.name, text, kept.correction_of))
        outcome.pending_count = kept.pending_count
    return outcome


@dataclass(frozen=True)
class ImageFacts:
    """What the upload summary says of a readable image (its pixels are not kept: an album of big
    images would sit in memory until the job is queued)."""

    nm_per_px: float | None  # the file's own scale, else the scale bar's
    scale_source: Text | None  # "the DM4 file's calibration", "the scale bar: 200 nm = 27.2 px"
    scale_confidence: float | None
    bar_nm_per_px: float | None  # the scale bar's reading when that is the scale used
    excluded: tuple[Text, ...] = ()  # "info bar x 0..640, y 480..537"

    @property
    def unsure(self) -> bool:
        """The scale is a scale bar reading to be confirmed (imaging.infobar.ASK_BELOW)."""
        return (
            self.bar_nm_per_px is not None
            and self.scale_confidence is not None
            and self.scale_confidence < ASK_BELOW
        )


def facts_of(loaded: LoadedImage) -> ImageFacts:
    bar = loaded.scale_bar
    from_bar = bar is not None and loaded.scale_source == bar.source_text()  # the file had none
    return ImageFacts(
        loaded.nm_per_px,
        loaded.scale_source,
        loaded.scale_confidence,
        bar.nm_per_px if from_bar else None,
        tuple(region.label() for region in loaded.excluded),
    )


def check_image(services: Services, item: Incoming, lang: str = "en") -> ImageFacts | str:
    """The image's scale and the regions left out (imaging.images), else the reason it cannot be
    used, in the user's language."""
    try:
        loaded = read_image(item.data, name=item.name, max_pixels=services.settings.max_image_pixels,
                            info_bar=True)
    except InputError as error:
        return render(lang, error.text)
    return facts_of(loaded)


def store_images(
    services: Services, user_id: int, items: list[Incoming], summaries: list[dict[str, Any]] | None = None
) -> list[int]:
    """The images as uploads, each with its summary (e.g. the scale question asked about it)."""
    ids = []
    for k, item in enumerate(items):
        sha = services.store.put_bytes(item.data)
        summary = dict(summaries[k]) if summaries else {}
        ids.append(services.run_db(_save_image, user_id, item.name, sha, len(item.data), summary))
    return ids


def _save_image(session, user_id: int, name: str, sha: str, size: int, summary: dict[str, Any]) -> int:
    upload = Upload(
        user_id=user_id, kind="image", original_name=name[:255], sha256=sha, size=size, summary=summary
    )
    session.add(upload)
    session.flush()
    return upload.id
