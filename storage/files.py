"""Content-addressed file store: files are named by their sha256 under the data dir.

Whatever name a user gave a file never becomes a path: only hex digests and our own
relative names (validated) are joined to the store's root.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from core.errors import UserError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class StoreError(UserError):
    """A store operation was refused (bad digest, path outside the store, missing file)."""


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    # Blobs by digest

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256 or ""):
            raise StoreError(f"not a sha256 digest: {sha256!r}")
        return self.blobs / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put_bytes(self, data: bytes) -> str:
        return self.put_stream(_BytesReader(data))

    def put_file(self, path: Path) -> str:
        with open(path, "rb") as handle:
            return self.put_stream(handle)

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> str:
        """Copy a stream into the store atomically; returns its sha256."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        try:
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
            target = self.path_for(sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                os.unlink(tmp_name)
                os.utime(target)  # a fresh reference: retention's grace period counts from now
            else:
                os.replace(tmp_name, target)  # atomic: readers see all of it or nothing
            return sha
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

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

    def iter_digests(self) -> Iterable[str]:
        for path in self.blobs.glob("*/*"):
            if _SHA256.match(path.name):
                yield path.name

    # Named directories (model bundles, result sets): our own relative names only

    def resolve(self, relative: str | Path) -> Path:
        """Join a relative name to the root, refusing anything that leaves the store."""
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts or str(relative).startswith("~"):
            raise StoreError(f"path outside the store: {relative}")
        target = (self.root / rel).resolve()
        if target != self.root and self.root not in target.parents:
            raise StoreError(f"path outside the store: {relative}")
        return target

    def contains(self, path: Path) -> bool:
        resolved = Path(path).resolve()
        return resolved == self.root or self.root in resolved.parents

    def install_dir(self, source: Path, relative: str) -> Path:
        """Move a finished directory into the store in one rename (no half-written bundles)."""
        target = self.resolve(relative)
        if target.exists():
            raise StoreError(f"already in the store: {relative}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix="dir-"))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def remove_dir(self, relative: str) -> None:
        target = self.resolve(relative)
        if target == self.root:
            raise StoreError("refusing to remove the store itself")
        shutil.rmtree(target, ignore_errors=True)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        chunk = bytes(self._data[self._pos:end])
        self._pos = end
        return chunk
