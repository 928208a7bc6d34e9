"""Backup and restore of a whole installation: the database and the file store in one archive.

Archive (tar, gzip when the name ends .gz/.tgz):
    db/segbot.sqlite   SQLite online-backup copy          (or db/segbot.pgdump: pg_dump -Fc)
    files/...          the file store (blobs/, models/...) without tmp/ and scratch/; the same
                       names whether the store is the local folder or an S3 bucket, so a backup
                       of one restores into the other
    manifest.json      last: format, revision, dialect, row counts, every member's sha256 and size

The database is copied first, then the files: the store is append-only apart from `segbot
clean`, so every file a row of the copy names is already there when the files are read.
Restore checks every checksum before it touches anything, and refuses a target that already
has users, models or jobs unless forced.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from core import VERSION
from core.digests import sha256_file
from core.logs import redact
from storage.files import TRANSIENT, Store, StoredFile, as_store

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/segbot.sqlite"
PG_MEMBER = "db/segbot.pgdump"
_CHUNK = 1 << 20
# Tables whose rows make an installation "not empty".
_CONTENT_TABLES = ("users", "uploads", "models", "jobs", "results", "datasets")


class BackupError(Exception):
    """Backup or restore refused or failed; the message says why and what to do."""


@dataclass
class BackupReport:
    path: Path
    dialect: str
    revision: str | None
    rows: dict[str, int]
    files: int
    bytes: int


@dataclass
class RestoreReport:
    dialect: str
    revision: str | None
    rows: dict[str, int]
    files: int
    missing: list[str] = field(default_factory=list)


# Helpers


@contextmanager
def ops_lock(data_dir: Path, what: str) -> Iterator[None]:
    """Backup, restore and clean exclude each other: a clean deleting files while a backup reads
    them would leave the archive without files its database copy names."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".segbot-ops.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another backup, restore or clean"
            raise BackupError(f"{holder} is running on this data dir; try again when it is done") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


class _HashingReader:
    """Hashes what tarfile reads, so each file is read once while it is archived."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        return chunk


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        raise BackupError("only file SQLite databases (sqlite:///path) can be backed up")
    return Path(url.removeprefix("sqlite:///"))


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment carrying it (not on the command line)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(argv: list[str], env: dict[str, str], what: str, **kwargs: Any) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} not found: install the PostgreSQL client (postgresql-client, "
                          "same or newer major version than the server)")
    proc = subprocess.run(argv, env=env, capture_output=True, **kwargs)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace") if isinstance(proc.stderr, bytes) else proc.stderr
        raise BackupError(f"{what} failed: {redact(stderr.strip())[-800:]}")
    return proc


def _revision(url: str) -> str | None:
    from storage.migrate import current_revision

    return current_revision(url)


def count_rows(url: str) -> dict[str, int]:
    """Rows per content table; tables that do not exist count as 0."""
    from sqlalchemy import inspect, text

    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return {
                table: (connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                        if table in present else 0)
                for table in _CONTENT_TABLES
            }
    finally:
        engine.dispose()


def _store_files(store: Store) -> list[StoredFile]:
    """Every file of the store except its scratch areas, in a stable order."""
    return sorted((f for f in store.iter_files() if f.name.split("/", 1)[0] not in TRANSIENT),
                  key=lambda f: f.name)


def _staged_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# Backup


def _dump_database(url: str, dest: Path) -> str:
    if _dialect(url) == "sqlite":
        source = sqlite3.connect(str(_sqlite_path(url)), timeout=30)
        target = sqlite3.connect(str(dest))
        try:
            source.backup(target)  # one step: a consistent snapshot even while others write
        finally:
            target.close()
            source.close()
        return SQLITE_MEMBER
    uri, env = _libpq(url)
    _check_pg_dump_version(url, env)
    _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", str(dest), uri], env,
         "pg_dump")
    return PG_MEMBER


def _check_pg_dump_version(url: str, env: dict[str, str]) -> None:
    """pg_dump refuses servers newer than itself; say so in words an operator can act on."""
    from sqlalchemy import text

    from storage.db import make_engine

    answer = _run(["pg_dump", "--version"], env, "pg_dump --version", text=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", answer)
    if not match:
        raise BackupError(f"cannot tell pg_dump's version from {answer.strip()!r}")
    client = int(match.group(1))
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            server = int(connection.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    finally:
        engine.dispose()
    if client < server:
        raise BackupError(f"pg_dump {client} cannot dump a PostgreSQL {server} server: install "
                          f"postgresql-client-{server} (or newer), or run the backup in the bot container")


def create_backup(database_url: str, files_dir: Path | Store, out: Path,
                  progress: Callable[[str], None] | None = None) -> BackupReport:
    """Write the archive to `out` (atomically: a partial archive never has the final name)."""
    out = Path(out)
    if out.resolve().is_relative_to(Path(files_dir.root if isinstance(files_dir, Store) else files_dir)
                                    .resolve()):
        raise BackupError("write the backup outside the file store (it would contain itself)")
    if _dialect(database_url) == "sqlite" and not _sqlite_path(database_url).is_file():
        raise BackupError(f"no database at {_sqlite_path(database_url)}: nothing to back up")
    store = as_store(files_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if out.name.endswith((".gz", ".tgz")) else "w"
    revision = _revision(database_url)
    rows = count_rows(database_url)
    entries: list[dict[str, Any]] = []
    total = 0
    partial = out.with_name(out.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="segbot-backup-") as scratch:
        dump = Path(scratch) / "dump"
        member = _dump_database(database_url, dump)
        if progress:
            progress(f"database copied ({dump.stat().st_size} bytes)")
        try:
            with tarfile.open(partial, mode, **({"compresslevel": 3} if mode == "w:gz" else {})) as archive:
                entries.append(_add(archive, dump, member))
                for entry in _store_files(store):
                    entries.append(_add_stored(archive, store, entry))
                    total += entries[-1]["size"]
                manifest = {
                    "format": FORMAT,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "segbot": VERSION,
                    "dialect": _dialect(database_url),
                    "revision": revision,
                    "database": member,
                    "rows": rows,
                    "files": entries,
                }
                data = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(data)
                info.mtime = int(datetime.now(UTC).timestamp())
                import io

                archive.addfile(info, io.BytesIO(data))
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return BackupReport(out, _dialect(database_url), revision, rows, len(entries) - 1, total)


def _add(archive: tarfile.TarFile, path: Path, name: str) -> dict[str, Any]:
    info = archive.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    with open(path, "rb") as handle:
        reader = _HashingReader(handle)
        archive.addfile(info, reader)  # type: ignore[arg-type]
    return {"path": name, "sha256": reader.digest.hexdigest(), "size": info.size}


def _add_stored(archive: tarfile.TarFile, store: Store, entry: StoredFile) -> dict[str, Any]:
    """A store file streamed into the archive (from disk or the bucket), hashed on the way."""
    info = tarfile.TarInfo("files/" + entry.name)
    info.size = entry.size
    info.mtime = int(entry.mtime)
    info.mode = 0o644
    with store.open_file(entry.name) as handle:
        reader = _HashingReader(handle)
        archive.addfile(info, reader)  # type: ignore[arg-type]
    return {"path": info.name, "sha256": reader.digest.hexdigest(), "size": info.size}


# Restore


def read_manifest(archive_path: Path) -> dict[str, Any]:
    with tarfile.open(archive_path, "r:*") as archive:
        try:
            member = archive.getmember(MANIFEST)
        except KeyError:
            raise BackupError(f"{archive_path.name} is not a segbot backup (no {MANIFEST})") from None
        handle = archive.extractfile(member)
        assert handle is not None
        return json.loads(handle.read())


def verify_backup(archive_path: Path) -> dict[str, Any]:
    """Check every member against the manifest in one streaming pass, writing nothing."""
    seen: dict[str, tuple[str, int]] = {}
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                if member.name == MANIFEST:
                    manifest = json.loads(handle.read())
                    continue
                digest = hashlib.sha256()
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                seen[member.name] = (digest.hexdigest(), member.size)
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        raise BackupError(f"cannot read {Path(archive_path).name}: {error}") from None
    if manifest is None:
        raise BackupError(f"{Path(archive_path).name} is not a segbot backup (no {MANIFEST})")
    listed = {entry["path"]: (entry["sha256"], entry["size"]) for entry in manifest["files"]}
    for name, expected in listed.items():
        if seen.get(name) != expected:
            raise BackupError(f"backup damaged: {name} does not match its checksum")
    unlisted = sorted(set(seen) - set(listed))
    if unlisted:
        raise BackupError(f"backup has files its manifest does not list (e.g. {unlisted[0]})")
    return manifest


def _extract_verified(archive_path: Path, staging: Path) -> dict[str, Any]:
    """Unpack into `staging` and check every member against the manifest."""
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            archive.extractall(staging, filter="data")  # refuses absolute paths, .., links out
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BackupError(f"cannot read {archive_path.name}: {error}") from None
    manifest_path = staging / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{archive_path.name} is not a segbot backup (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not supported by this segbot")
    listed = set()
    for entry in manifest["files"]:
        path = staging / entry["path"]
        listed.add(entry["path"])
        intact = (path.is_file() and path.stat().st_size == entry["size"]
                  and sha256_file(path) == entry["sha256"])
        if not intact:
            raise BackupError(f"backup damaged: {entry['path']} does not match its checksum; "
                              "nothing restored")
    present = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()}
    extra = present - listed - {MANIFEST}
    if extra:
        raise BackupError(f"backup has files its manifest does not list (e.g. {sorted(extra)[0]}); "
                          "nothing restored")
    return manifest


def _store_is_empty(store: Store) -> bool:
    return store.is_empty()


def _restore_sqlite(dump: Path, url: str) -> None:
    target_path = _sqlite_path(url)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    from storage.db import engine_for

    engine_for(url).dispose()  # no pooled connection of ours keeps the old pages
    source = sqlite3.connect(str(dump))
    target = sqlite3.connect(str(target_path), timeout=30)
    try:
        source.backup(target)  # replaces the target's content in one transaction
    finally:
        target.close()
        source.close()


def _restore_postgres(dump: Path, url: str) -> None:
    """Drop what is there and load the dump in ONE transaction: on any error nothing changes."""
    from sqlalchemy import inspect

    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
    finally:
        engine.dispose()
    uri, env = _libpq(url)
    script = _run(["pg_restore", "--no-owner", "--no-privileges", "--file", "-", str(dump)], env,
                  "pg_restore").stdout
    drops = "".join(f'DROP TABLE IF EXISTS public."{table}" CASCADE;\n' for table in tables)
    _run(["psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--single-transaction",
          "-c", drops or "SELECT 1;", "-f", "-", uri], env, "psql (loading the dump)", input=script)


def restore_backup(archive_path: Path, database_url: str, files_dir: Path | Store, *, force: bool = False,
                   progress: Callable[[str], None] | None = None) -> RestoreReport:
    """Restore an archive into this installation's database and file store."""
    from storage.migrate import head_revision, upgrade

    archive_path = Path(archive_path)
    if not archive_path.is_file():
        raise BackupError(f"no such backup file: {archive_path}")
    dialect = _dialect(database_url)
    store = as_store(files_dir)
    if not force:
        rows = count_rows(database_url) if _database_exists(database_url) else {}
        if any(rows.values()) or not _store_is_empty(store):
            busy = ", ".join(f"{n} {t}" for t, n in rows.items() if n) or "files in the store"
            raise BackupError(f"target installation is not empty ({busy}); restore into an empty one, "
                              "or pass --force to replace it")
    # Staging beside the store (or its cache): the final moves are renames on one filesystem.
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=store.root.parent))
    try:
        manifest = _extract_verified(archive_path, staging)
        if manifest["dialect"] != dialect:
            raise BackupError(f"backup holds a {manifest['dialect']} database but DATABASE_URL is {dialect}; "
                              f"restore into a {manifest['dialect']} database")
        head = head_revision(database_url)
        if manifest.get("revision") and not _known_revision(database_url, manifest["revision"]):
            raise BackupError(f"backup is at schema {manifest['revision']}, unknown to this segbot (head "
                              f"{head}); install the segbot version that made it")
        if progress:
            progress(f"archive verified: {len(manifest['files'])} members")
        dump = staging / manifest["database"]
        if dialect == "sqlite":
            _restore_sqlite(dump, database_url)
        else:
            _restore_postgres(dump, database_url)
        if progress:
            progress("database restored")
        staged_files = staging / "files"
        moved = 0
        staged = _staged_files(staged_files)
        for path in sorted(staged, key=lambda p: (p.name == ".complete", p.as_posix())):  # markers last
            store.import_file(path, path.relative_to(staged_files).as_posix())  # rename or PUT
            moved += 1
        for bundle in sorted({"/".join(p.relative_to(staged_files).parts[:3]) for p in staged
                              if p.relative_to(staged_files).parts[0] == "models"}):
            store.seal_dir(bundle)  # a local store's bundle restored into S3 gets its marker
        upgrade(database_url)  # an older backup reaches this code's schema
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from ops.retention import missing_references

    missing = missing_references(database_url, store)
    return RestoreReport(dialect, _revision(database_url), count_rows(database_url), moved, missing)


def _database_exists(url: str) -> bool:
    if _dialect(url) == "sqlite":
        return _sqlite_path(url).is_file()
    return True


def _known_revision(url: str, revision: str) -> bool:
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    try:
        return ScriptDirectory.from_config(alembic_config(url)).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        return False
