"""Content-addressed file store: blobs named by their sha256, plus our own named files (model
bundles, checkpoints). Two backends behind one interface, chosen by
`storage.stores.open_store(settings)`:

- `FileStore`: a local folder (or an NFS mount: the same thing to us), the default;
- `storage.s3store.S3Store`: an S3-compatible bucket (SEGBOT_STORE_URL=s3://bucket/prefix).

Whatever name a user gave a file never becomes a path or key: only hex digests and our own
relative names (validated) are joined to the store's root. Nothing is ever half-written under
its final name: local files are renamed into place, objects are single PUTs (see s3store).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from core.errors import UserError
from core.i18n import N_

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# Store areas that hold nothing to keep: backups skip them.
TRANSIENT = ("tmp", "scratch")


class StoreError(UserError):
    """A store operation was refused (bad digest, path outside the store, missing file)."""


class StoreFull(StoreError):
    """The store's disk (or quota) is full: the job fails with this message, and the worker logs
    it as an error for the administrator."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(N_("The server's disk is full, so the result could not be saved; the "
                            "administrator has been told. Please try again later."))
        self.detail = detail

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.__class__, (self.detail,)


_FULL_WORDS = ("No space left on device", "Disk quota exceeded", f"[Errno {errno.ENOSPC}]",
               "XMinioStorageFull")  # shutil.copytree folds errors into text; MinIO says it by code


def is_disk_full(error: BaseException | None) -> bool:
    """ENOSPC/EDQUOT, also when wrapped (shutil.Error lists its errors as text) or chained."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(error, shutil.Error | OSError) and any(w in str(error) for w in _FULL_WORDS):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


@dataclass(frozen=True)
class StoredFile:
    name: str  # relative to the store, posix
    size: int
    mtime: float  # seconds since the epoch


def check_name(relative: str | Path) -> str:
    """Our own relative name, normalised; anything that could leave the store is refused."""
    text = str(relative)
    rel = PurePosixPath(text.replace("\\", "/"))
    if not text or rel.is_absolute() or ".." in rel.parts or text.startswith("~") or str(rel) == ".":
        raise StoreError(f"path outside the store: {relative}")
    return rel.as_posix()


def blob_name(sha256: str) -> str:
    if not _SHA256.match(sha256 or ""):
        raise StoreError(f"not a sha256 digest: {sha256!r}")
    return f"blobs/{sha256[:2]}/{sha256}"


class Store(ABC):
    """What the bot, the job bodies and ops use. `root` is a local folder: the store itself for
    the local backend, the local cache of the object store for S3 (bundles are loaded by path)."""

    root: Path
    tmp: Path  # local scratch space on this machine

    def describe(self) -> str:
        return str(self.root)

    # Blobs by digest

    def put_bytes(self, data: bytes) -> str:
        return self.put_stream(_BytesReader(data))

    def put_file(self, path: Path) -> str:
        with open(path, "rb") as handle:
            return self.put_stream(handle)

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> str:
        """Copy a stream into the store; returns its sha256. All of it or nothing is stored."""
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        try:
            with disk_full_as_store_full():
                digest = hashlib.sha256()
                size = 0
                with os.fdopen(fd, "wb") as out:
                    while chunk := stream.read(_CHUNK):
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise StoreError(f"file larger than {max_bytes} bytes")
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                sha = digest.hexdigest()
                self._commit_blob(Path(tmp_name), sha)
            return sha
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    @abstractmethod
    def _commit_blob(self, spooled: Path, sha256: str) -> None:
        """Make the complete spooled file the blob `sha256` (it may be moved away)."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, sha256: str) -> bytes: ...

    @abstractmethod
    def delete(self, sha256: str) -> bool: ...

    def iter_digests(self) -> Iterator[str]:
        for entry in self.iter_files("blobs"):
            name = entry.name.rsplit("/", 1)[-1]
            if _SHA256.match(name):
                yield name

    def blob_stat(self, sha256: str) -> StoredFile | None:
        return self.stat(blob_name(sha256))

    # Named files (our own relative names)

    def resolve(self, relative: str | Path) -> Path:
        """The local path for a name, refusing anything that leaves the root (symlinks too)."""
        rel = check_name(relative)
        target = (self.root / rel).resolve()
        if target != self.root and self.root not in target.parents:
            raise StoreError(f"path outside the store: {relative}")
        return target

    def contains(self, path: Path) -> bool:
        resolved = Path(path).resolve()
        return resolved == self.root or self.root in resolved.parents

    @abstractmethod
    def stat(self, relative: str) -> StoredFile | None: ...

    @abstractmethod
    def iter_files(self, under: str = "") -> Iterator[StoredFile]:
        """Every stored file below `under` (all of the store when empty), any order."""

    @abstractmethod
    def open_file(self, relative: str) -> BinaryIO: ...

    @abstractmethod
    def import_file(self, local: Path, relative: str) -> None:
        """Store a local file under `relative` atomically (the local file may be moved away)."""

    @abstractmethod
    def publish(self, relative: str) -> None:
        """Make the file written at resolve(relative) durable in the store (local: it already is)."""

    @abstractmethod
    def fetch(self, relative: str) -> Path | None:
        """A local copy of the stored file `relative` as it is now, or None when there is none."""

    @abstractmethod
    def fetch_dir(self, relative: str) -> Path | None:
        """A local copy of a complete installed directory (a bundle), or None."""

    @abstractmethod
    def install_dir(self, source: Path, relative: str, replace: bool = False, move: bool = False) -> Path:
        """Put a finished directory in the store all at once (no half-written bundles); returns its
        local path. `replace`: an existing one (an orphan of a failed attempt) is replaced;
        `move`: `source` may be moved instead of copied (it is gone afterwards)."""

    @abstractmethod
    def remove_dir(self, relative: str) -> None: ...

    def seal_dir(self, relative: str) -> None:
        """Mark a directory whose files were stored one by one (a restore) as complete; a local
        directory needs no marker."""
        check_name(relative)

    @abstractmethod
    def check_writable(self) -> None:
        """Write and remove a probe (the health check); raises when the store cannot be written."""

    def has_dir(self, relative: str) -> bool:
        return any(True for _ in self.iter_files(check_name(relative)))

    def dir_size(self, relative: str) -> int:
        return sum(f.size for f in self.iter_files(check_name(relative)))

    def is_empty(self) -> bool:
        return not any(f for f in self.iter_files() if f.name.split("/", 1)[0] not in TRANSIENT)


class FileStore(Store):
    """The local backend: a folder on this machine or an NFS mount shared by every worker."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / blob_name(sha256)

    def _commit_blob(self, spooled: Path, sha256: str) -> None:
        target = self.path_for(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.utime(target)  # a fresh reference: retention's grace period counts from now
        else:
            os.replace(spooled, target)  # atomic: readers see all of it or nothing

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def read_bytes(self, sha256: str) -> bytes:
        path = self.path_for(sha256)
        if not path.is_file():
            raise StoreError(f"no such file in the store: {sha256}")
        return path.read_bytes()

    def delete(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        if path.is_file():
            path.unlink()
            return True
        return False

    def stat(self, relative: str) -> StoredFile | None:
        path = self.resolve(relative)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        return StoredFile(check_name(relative), info.st_size, info.st_mtime) if path.is_file() else None

    def iter_files(self, under: str = "") -> Iterator[StoredFile]:
        base = self.resolve(under) if under else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            info = path.stat()
            yield StoredFile(path.relative_to(self.root).as_posix(), info.st_size, info.st_mtime)

    def open_file(self, relative: str) -> BinaryIO:
        try:
            return open(self.resolve(relative), "rb")
        except FileNotFoundError:
            raise StoreError(f"no such file in the store: {relative}") from None

    def import_file(self, local: Path, relative: str) -> None:
        target = self.resolve(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        with disk_full_as_store_full():
            shutil.move(local, target)  # a rename on one filesystem, a copy across mounts

    def publish(self, relative: str) -> None:
        if not self.resolve(relative).exists():
            raise StoreError(f"nothing written at {relative}")

    def fetch(self, relative: str) -> Path | None:
        path = self.resolve(relative)
        return path if path.is_file() else None

    def fetch_dir(self, relative: str) -> Path | None:
        path = self.resolve(relative)
        return path if path.is_dir() else None

    def install_dir(self, source: Path, relative: str, replace: bool = False, move: bool = False) -> Path:
        target = self.resolve(relative)
        if target == self.root:
            raise StoreError("refusing to replace the store itself")
        if target.exists() and not replace:
            raise StoreError(f"already in the store: {relative}")
        with disk_full_as_store_full(), staged_dir(self.tmp, target) as staging:
            fill_dir(staging, Path(source), move)
        return target

    def remove_dir(self, relative: str) -> None:
        target = self.resolve(relative)
        if target == self.root:
            raise StoreError("refusing to remove the store itself")
        shutil.rmtree(target, ignore_errors=True)

    def check_writable(self) -> None:
        with tempfile.NamedTemporaryFile(dir=self.tmp, prefix="health-") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())


LocalStore = FileStore


@contextmanager
def staged_dir(tmp: Path, target: Path) -> Iterator[Path]:
    """A fresh folder in `tmp` to fill; when the block ends well it replaces `target` whole (readers
    see the old folder or the new one, never half), when it fails it is removed."""
    staging = Path(tempfile.mkdtemp(dir=tmp, prefix="dir-"))
    try:
        yield staging
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fill_dir(staging: Path, source: Path, move: bool) -> None:
    """Put `source`'s files into the empty `staging`: moved (a rename on the same disk, so no second
    copy of the weights) or copied."""
    if move:
        staging.rmdir()
        shutil.move(source, staging)
    else:
        shutil.copytree(source, staging, dirs_exist_ok=True)


class disk_full_as_store_full:
    """ENOSPC/EDQUOT become StoreFull (a clear message for the user); other errors pass."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        if error is not None and is_disk_full(error):
            raise StoreFull(str(error)) from error
        return False


def as_store(store_or_dir: Store | Path | str) -> Store:
    """Ops functions take a Store or (as before) a local files dir."""
    return store_or_dir if isinstance(store_or_dir, Store) else FileStore(Path(store_or_dir))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        chunk = bytes(self._data[self._pos:end])
        self._pos = end
        return chunk
