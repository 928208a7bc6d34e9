"""The object-store backend: an S3-compatible bucket (AWS, MinIO, Ceph...) through fsspec/s3fs.

Keys mirror the local layout under the URL's prefix: blobs/ab/<sha256>, models/u1/v3/...,
scratch/jobs/<id>/checkpoint.pt.

"Never a partial object": one PutObject is atomic in S3 — readers see the whole new object or
none at all, never a prefix of it — and a multipart upload (s3fs uses one for large files) only
becomes visible when it is completed, so no temp key + copy is needed. A *directory* (a model
bundle) is several objects, so its completion marker `.complete` is written last and readers
(fetch_dir) take a bundle only once the marker is there.

Local cache: bundles are loaded by path (torch, mmdet), so fetch_dir downloads a bundle into
`cache_dir` (by default the data dir's files/, the same place the local backend uses, so
TrainedModel.path and the trusted-roots check work unchanged). The marker holds a random id;
a cached copy is reused only while its marker matches the bucket's, and is removed once the bucket
has no bundle there any more (deleted on another machine). The cache is disposable.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from core.settings import Settings
from storage.files import (
    Store,
    StoredFile,
    StoreError,
    blob_name,
    check_name,
    disk_full_as_store_full,
    fill_dir,
    staged_dir,
)

MARKER = ".complete"
RETRY_S = 90.0  # how long a call waits for an object store that went away (a restart, a network blip)
log = logging.getLogger(__name__)


def parse_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix -> ('bucket', 'prefix')."""
    if not url.startswith("s3://"):
        raise StoreError(f"not an s3:// URL: {url}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise StoreError(f"no bucket in {url}")
    return bucket, prefix.strip("/")


class S3Store(Store):
    def __init__(self, url: str, cache_dir: Path, *, endpoint_url: str | None = None, key: str | None = None,
                 secret: str | None = None, region: str | None = None) -> None:
        bucket, prefix = parse_url(url)
        self.bucket = bucket
        self.base = f"{bucket}/{prefix}" if prefix else bucket
        self.root = Path(cache_dir).resolve()
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        client: dict[str, Any] = {}
        if endpoint_url:
            client["endpoint_url"] = endpoint_url
        if region:
            client["region_name"] = region
        self._options = {"key": key, "secret": secret, "client_kwargs": client,
                         "use_listings_cache": False, "skip_instance_cache": True}
        self._fs: Any = None
        self._pid = 0
        self.retry_s = RETRY_S

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        secret = settings.store_secret_key.get_secret_value() if settings.store_secret_key else None
        return cls(settings.store_url, settings.store_cache_dir, endpoint_url=settings.store_endpoint_url,
                   key=settings.store_access_key, secret=secret, region=settings.store_region)

    @property
    def fs(self) -> Any:
        """One s3fs client per process: a forked worker child must not share its parent's loop."""
        if self._fs is None or self._pid != os.getpid():
            import s3fs

            self._fs = s3fs.S3FileSystem(**self._options)
            self._pid = os.getpid()
        return self._fs

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """fs.<method>(...), again while the server cannot be reached (botocore's own few retries
        cover about 8 s: too short for a restarting MinIO). A refusal (no such key, access denied,
        a full disk) is never retried; every call retried here is idempotent (whole-object PUTs)."""
        from botocore.exceptions import ConnectionError as Unreachable
        from botocore.exceptions import HTTPClientError

        deadline, delay = time.monotonic() + self.retry_s, 0.5
        while True:
            try:
                return getattr(self.fs, method)(*args, **kwargs)
            except (Unreachable, HTTPClientError) as error:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("object store %s unreachable (%s); %s again in %.1f s", self.describe(),
                            type(error).__name__, method, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def describe(self) -> str:
        return f"s3://{self.base}"

    def _key(self, relative: str) -> str:
        return f"{self.base}/{check_name(relative)}"

    def _put(self, local: Path, relative: str) -> None:
        with disk_full_as_store_full():
            self._call("put_file", str(local), self._key(relative))  # one object, atomic (see above)

    # Blobs

    def _commit_blob(self, spooled: Path, sha256: str) -> None:
        # Always (re)written: S3 cannot touch an object, and a fresh LastModified is what
        # retention's grace period needs when a new row names an old blob.
        self._put(spooled, blob_name(sha256))

    def exists(self, sha256: str) -> bool:
        return self.stat(blob_name(sha256)) is not None

    def read_bytes(self, sha256: str) -> bytes:
        try:
            return self._call("cat_file", self._key(blob_name(sha256)))
        except FileNotFoundError:
            raise StoreError(f"no such file in the store: {sha256}") from None

    def delete(self, sha256: str) -> bool:
        if not self.exists(sha256):
            return False
        self._call("rm_file", self._key(blob_name(sha256)))
        return True

    # Named files

    def stat(self, relative: str) -> StoredFile | None:
        try:
            info = self._call("info", self._key(relative))
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        return StoredFile(check_name(relative), int(info["size"]), _mtime(info))

    def iter_files(self, under: str = "") -> Iterator[StoredFile]:
        top = self._key(under) if under else self.base
        try:
            found = self._call("find", top, detail=True)
        except FileNotFoundError:
            return
        for path, info in sorted(found.items()):
            if info.get("type") != "file" or not path.startswith(self.base + "/"):
                continue
            yield StoredFile(path[len(self.base) + 1:], int(info["size"]), _mtime(info))

    def open_file(self, relative: str) -> BinaryIO:
        try:
            return self.fs.open(self._key(relative), "rb")
        except FileNotFoundError:
            raise StoreError(f"no such file in the store: {relative}") from None

    def import_file(self, local: Path, relative: str) -> None:
        self._put(Path(local), relative)
        Path(local).unlink(missing_ok=True)

    def publish(self, relative: str) -> None:
        local = self.resolve(relative)
        if not local.is_file():
            raise StoreError(f"nothing written at {relative}")
        self._put(local, relative)

    def fetch(self, relative: str) -> Path | None:
        """Always downloaded: another machine may have written a newer one (a checkpoint)."""
        target = self.resolve(relative)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="get-")
        os.close(fd)
        try:
            self._call("get_file", self._key(relative), tmp_name)
        except FileNotFoundError:
            os.unlink(tmp_name)
            target.unlink(missing_ok=True)
            return None
        except BaseException:
            os.unlink(tmp_name)
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, target)
        return target

    def _marker(self, relative: str) -> str | None:
        try:
            return self._call("cat_file", self._key(f"{check_name(relative)}/{MARKER}")).decode()
        except FileNotFoundError:
            return None

    def fetch_dir(self, relative: str) -> Path | None:
        marker = self._marker(relative)
        target = self.resolve(relative)
        if marker is None:  # gone from the bucket (a deleted model): this machine's copy is stale
            shutil.rmtree(target, ignore_errors=True)
            return None
        cached = target / MARKER
        if cached.is_file() and cached.read_text() == marker:
            return target
        with staged_dir(self.tmp, target) as staging:
            prefix = check_name(relative) + "/"
            for entry in self.iter_files(check_name(relative)):
                local = staging / entry.name[len(prefix):]
                local.parent.mkdir(parents=True, exist_ok=True)
                self._call("get_file", self._key(entry.name), str(local))
            (staging / MARKER).write_text(marker)
        return target

    def install_dir(self, source: Path, relative: str, replace: bool = False, move: bool = False) -> Path:
        name = check_name(relative)
        target = self.resolve(name)
        if self._marker(name) is not None:
            if not replace:
                raise StoreError(f"already in the store: {relative}")
        if replace or self.has_dir(name):  # an orphan of an attempt that died: its objects go first
            self._remove_remote(name)
        source = Path(source)
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != MARKER)
        for path in files:
            self._put(path, f"{name}/{path.relative_to(source).as_posix()}")
        marker = uuid.uuid4().hex
        with disk_full_as_store_full():
            self._call("pipe_file", self._key(f"{name}/{MARKER}"), marker.encode())  # last: complete now
        # The local cache gets the same files, so this machine loads the bundle without a download.
        with staged_dir(self.tmp, target) as staging:
            fill_dir(staging, source, move)
            (staging / MARKER).write_text(marker)
        return target

    def _remove_remote(self, name: str) -> None:
        keys = [self._key(entry.name) for entry in self.iter_files(name)]
        marker = self._key(f"{name}/{MARKER}")
        if marker in keys:  # the marker first: no reader takes a bundle that is being removed
            self._call("rm_file", marker)
            keys.remove(marker)
        if keys:
            self._call("rm", keys)

    def remove_dir(self, relative: str) -> None:
        name = check_name(relative)
        self._remove_remote(name)
        shutil.rmtree(self.resolve(name), ignore_errors=True)

    def seal_dir(self, relative: str) -> None:
        name = check_name(relative)
        if self._marker(name) is None and self.has_dir(name):
            self._call("pipe_file", self._key(f"{name}/{MARKER}"), uuid.uuid4().hex.encode())

    def ensure_bucket(self) -> None:
        """Create the bucket when it is not there (`segbot migrate`, compose's one-shot step)."""
        if self.fs.exists(self.bucket):
            return
        region = self._options["client_kwargs"].get("region_name")
        extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} \
            if region and region != "us-east-1" else {}  # AWS refuses a constraint for us-east-1
        self.fs.call_s3("create_bucket", Bucket=self.bucket, **extra)
        self.fs.invalidate_cache()

    def check_writable(self) -> None:
        key = self._key(f"tmp/health-{uuid.uuid4().hex}")
        self.fs.pipe_file(key, b"ok")
        self.fs.rm_file(key)


def _mtime(info: dict[str, Any]) -> float:
    moment = info.get("LastModified") or info.get("last_modified")
    return moment.timestamp() if hasattr(moment, "timestamp") else 0.0
