"""Backup -> wipe -> restore gives back every row and file; damaged archives and busy targets
are refused without changing anything."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from ops.backup import BackupError, create_backup, read_manifest, restore_backup, verify_backup
from storage.db import engine_for, make_engine, session_scope
from storage.files import FileStore
from storage.migrate import current_revision, head_revision, upgrade
from storage.models import Dataset, Job, Notice, Result, TrainedModel, Upload, User

TABLES = (User, Upload, Dataset, TrainedModel, Job, Result, Notice)


def populate(url: str, files_dir: Path, store=None) -> None:
    """Two users with uploads, a dataset, a trained model (bundle dir), a predict job and results."""
    store = store or FileStore(files_dir)
    with session_scope(url) as session:
        for n, name in ((1, "chemist"), (2, "physicist")):
            user = User(telegram_id=10**11 + n, username=name, nm_per_px=0.5 * n, preferences={"lang": "en"})
            session.add(user)
            session.flush()
            shas = [store.put_bytes(f"labelme {name} {i}".encode() * 100) for i in range(3)]
            uploads = [Upload(user_id=user.id, kind="labelme", original_name=f"{i}.json", sha256=sha,
                              size=len(store.read_bytes(sha))) for i, sha in enumerate(shas)]
            session.add_all(uploads)
            session.flush()
            dataset = Dataset(user_id=user.id, name="first", uploads=uploads[:2])
            session.add(dataset)
            train = Job(user_id=user.id, kind="train", state="succeeded",
                        params={"upload_ids": [uploads[0].id]}, progress=1.0, gpu_seconds=12.5)
            session.add(train)
            session.flush()
            bundle = files_dir.parent / "bundle-src"
            bundle.mkdir(exist_ok=True)
            (bundle / "weights.pt").write_bytes(os.urandom(4096))
            (bundle / "bundle.json").write_text('{"classes": ["particle"]}')
            relative = f"models/u{user.id}/v1"
            store.install_dir(bundle, relative)
            shutil.rmtree(bundle)
            model = TrainedModel(user_id=user.id, version=1, classes=["particle"], status="ready",
                                 path=f"files/{relative}", dataset_id=dataset.id, job_id=train.id,
                                 metrics={"f1": 0.9})
            session.add(model)
            session.flush()
            user.active_model_id = model.id
            predict = Job(user_id=user.id, kind="predict", state="succeeded", model_id=model.id,
                          params={"upload_ids": [uploads[2].id], "model_id": model.id})
            session.add(predict)
            session.flush()
            files = {"overlay": store.put_bytes(os.urandom(2000)),
                     "csv": store.put_bytes(f"id,d_nm\n{name},3.5\n".encode())}
            session.add(Result(job_id=predict.id, user_id=user.id, upload_id=uploads[2].id,
                               image_name="a.png", files=files, summary={"n_objects": 600}))
            session.add(Notice(user_id=user.id, job_id=predict.id, kind="predict_done", payload={"n": 600}))


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every column of every row of every table, in primary-key order."""
    out = {}
    with session_scope(url) as session:
        for model in TABLES:
            columns = [c.key for c in inspect(model).column_attrs]
            rows = session.scalars(select(model).order_by(model.id)).all()
            out[model.__tablename__] = [tuple(_plain(getattr(row, c)) for c in columns) for row in rows]
    return out


def _plain(value):  # datetimes from SQLite come back naive: compare the UTC wall time
    if hasattr(value, "tzinfo") and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def checksums(files_dir: Path) -> dict[str, str]:
    return {p.relative_to(files_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(files_dir.rglob("*"))
            if p.is_file() and "tmp" not in p.relative_to(files_dir).parts}


def wipe(url: str, files_dir: Path) -> None:
    engine_for(url).dispose()
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    else:
        engine = make_engine(url)
        with engine.begin() as connection:
            for table in inspect(connection).get_table_names():
                connection.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
        engine.dispose()
    shutil.rmtree(files_dir)


@pytest.fixture(params=["sqlite", "postgresql"])
def installation(request, tmp_path: Path):
    url = (f"sqlite:///{tmp_path / 'data' / 'segbot.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    files_dir = tmp_path / "data" / "files"
    files_dir.mkdir(parents=True)
    upgrade(url)
    populate(url, files_dir)
    return url, files_dir


def test_round_trip_gives_back_every_row_and_file(installation, tmp_path: Path) -> None:
    url, files_dir = installation
    rows_before, files_before = snapshot(url), checksums(files_dir)
    archive = tmp_path / "backup.tar.gz"
    report = create_backup(url, files_dir, archive)
    assert report.rows["users"] == 2 and report.rows["models"] == 2 and report.rows["jobs"] == 4
    assert report.files == len(files_before) == 2 * (3 + 2 + 2)  # uploads, results, bundle files
    manifest = read_manifest(archive)
    assert manifest["revision"] == head_revision(url) and len(manifest["files"]) == report.files + 1

    wipe(url, files_dir)
    if url.startswith("postgresql"):
        upgrade(url)  # as the compose `migrate` service leaves it: migrated, empty
    restored = restore_backup(archive, url, files_dir)

    assert restored.missing == []
    assert restored.files == len(files_before)
    assert current_revision(url) == head_revision(url)
    assert checksums(files_dir) == files_before
    assert snapshot(url) == rows_before
    for sha, digest in ((p.name, hashlib.sha256(p.read_bytes()).hexdigest())
                        for p in (files_dir / "blobs").rglob("*") if p.is_file()):
        assert sha == digest
    with session_scope(url) as session:  # the database still works: sequences continue after the ids
        user = session.scalar(select(User).where(User.username == "chemist"))
        session.add(Upload(user_id=user.id, kind="image", original_name="new.png", sha256="b" * 64, size=1))


def test_busy_target_refused_unless_forced(installation, tmp_path: Path) -> None:
    url, files_dir = installation
    archive = tmp_path / "b.tar"
    create_backup(url, files_dir, archive)
    with session_scope(url) as session:
        session.add(User(telegram_id=99, username="newcomer"))
    before = snapshot(url)
    with pytest.raises(BackupError, match="not empty .*3 users.*--force"):
        restore_backup(archive, url, files_dir)
    assert snapshot(url) == before
    restore_backup(archive, url, files_dir, force=True)
    with session_scope(url) as session:
        assert session.scalar(select(User).where(User.telegram_id == 99)) is None
        assert len(session.scalars(select(User)).all()) == 2


def test_damaged_archive_changes_nothing(tmp_path: Path, settings) -> None:
    url, files_dir = settings.database_url, settings.files_dir
    upgrade(url)
    populate(url, files_dir)
    archive = tmp_path / "good.tar"
    create_backup(url, files_dir, archive)
    # Flip bytes of one blob inside the archive (same size, so only the checksum can tell).
    bad = tmp_path / "bad.tar"
    with tarfile.open(archive) as source, tarfile.open(bad, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name.startswith("files/blobs/") and b"chemist" in data:
                data = data.replace(b"chemist", b"CHEMIST", 1)
            target.addfile(member, io.BytesIO(data))
    assert verify_backup(archive)["rows"]["users"] == 2
    with pytest.raises(BackupError, match="does not match its checksum"):
        verify_backup(bad)
    wipe(url, files_dir)
    with pytest.raises(BackupError, match="does not match its checksum"):
        restore_backup(bad, url, files_dir)
    assert not Path(url.removeprefix("sqlite:///")).exists() or not any(
        inspect(make_engine(url)).get_table_names())
    assert not any(p.is_file() for p in files_dir.rglob("*") if "tmp" not in p.parts)
    assert not any(p.name.startswith(".restore-") for p in files_dir.parent.iterdir())
    with pytest.raises(BackupError, match="not a segbot backup"):
        plain = tmp_path / "plain.tar"
        with tarfile.open(plain, "w") as target:
            target.add(__file__, arcname="x.py")
        restore_backup(plain, url, files_dir)


def test_cross_dialect_restore_is_refused(settings, tmp_path: Path, postgres_url: str) -> None:
    upgrade(settings.database_url)
    populate(settings.database_url, settings.files_dir)
    archive = tmp_path / "sqlite.tar"
    create_backup(settings.database_url, settings.files_dir, archive)
    upgrade(postgres_url)
    with pytest.raises(BackupError, match="backup holds a sqlite database but DATABASE_URL is postgresql"):
        restore_backup(archive, postgres_url, tmp_path / "other" / "files")


@pytest.mark.slow
def test_cli_backup_and_restore(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL")}
    upgrade(f"sqlite:///{source / 'segbot.db'}")
    populate(f"sqlite:///{source / 'segbot.db'}", source / "files")
    archive = tmp_path / "nightly.tar.gz"
    run = lambda data, *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "segbot", *args], env=dict(env, SEGBOT_DATA_DIR=str(data)), cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    proc = run(source, "backup", "--out", str(archive))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"backup written: {archive} (sqlite at {head_revision('sqlite://')}")
    proc = run(target, "restore", "--check", str(archive))
    assert proc.returncode == 0 and proc.stdout.startswith("nightly.tar.gz: intact; sqlite at "), proc.stderr
    assert not (target / "segbot.db").exists()  # a check changes nothing
    proc = run(target, "restore", str(archive))
    assert proc.returncode == 0, proc.stderr
    assert "2 users" in proc.stdout and "2 models" in proc.stdout and "4 jobs" in proc.stdout
    assert checksums(target / "files") == checksums(source / "files")
    proc = run(target, "restore", str(archive))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: target installation is not empty")
    assert "Traceback" not in proc.stderr
    env["DATABASE_URL"] = "postgresql://segbot:hunter2@127.0.0.1:9/segbot"  # nothing listens on port 9
    proc = run(target, "backup", "--out", str(tmp_path / "x.tar"))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: database error: ")
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    assert not (tmp_path / "x.tar").exists()


def test_old_pg_dump_is_refused_in_words(postgres_url: str, tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    (fake / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    upgrade(postgres_url)
    with pytest.raises(BackupError, match=r"pg_dump 9 cannot dump a PostgreSQL 1\d server"):
        create_backup(postgres_url, tmp_path / "files", tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


def test_backup_restore_and_clean_exclude_each_other(tmp_path: Path) -> None:
    from ops.backup import ops_lock

    with ops_lock(tmp_path, "a backup"):
        with pytest.raises(BackupError, match=r"^a backup \(pid \d+\) is running on this data dir"):
            with ops_lock(tmp_path, "a clean"):
                pass
    with ops_lock(tmp_path, "a clean"):  # free again once the first is done
        pass


def test_backup_refuses_nonsense_targets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none' / 'segbot.db'}"
    with pytest.raises(BackupError, match="no database at"):
        create_backup(url, tmp_path / "files", tmp_path / "b.tar")
    assert not (tmp_path / "none" / "segbot.db").exists()  # asking did not create one
    upgrade(url)
    (tmp_path / "files").mkdir()
    with pytest.raises(BackupError, match="outside the file store"):
        create_backup(url, tmp_path / "files", tmp_path / "files" / "b.tar")


def test_archive_members_cannot_escape(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as archive:
        for name, data in (("files/../../escaped", b"x"), ("manifest.json", b'{"format": 1, "files": []}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data_dir = tmp_path / "deep" / "data"
    with pytest.raises(BackupError, match="cannot read evil.tar"):
        restore_backup(evil, f"sqlite:///{data_dir / 'segbot.db'}", data_dir / "files")
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))


def _listing(store) -> dict[str, str]:
    out = {}
    for entry in store.iter_files():
        if entry.name.split("/")[0] in ("tmp", "scratch"):
            continue
        with store.open_file(entry.name) as handle:
            out[entry.name] = hashlib.sha256(handle.read()).hexdigest()
    return out


def test_backup_and_restore_on_s3_and_between_backends(tmp_path: Path, s3_env) -> None:
    """S3 -> archive -> emptied bucket gives everything back; the same archive restores into a
    local store, and a local store's archive into S3 (bundles get their completion marker)."""
    from tests.conftest import make_s3_store

    data = tmp_path / "data"
    url = f"sqlite:///{data / 'segbot.db'}"
    upgrade(url)
    s3 = make_s3_store(s3_env, data / "files")
    populate(url, data / "files", store=s3)
    (data / "files" / "scratch" / "jobs" / "9").mkdir(parents=True)  # transient: not backed up
    (data / "files" / "scratch" / "jobs" / "9" / "checkpoint.pt").write_bytes(b"c")
    s3.publish("scratch/jobs/9/checkpoint.pt")
    before, rows = _listing(s3), snapshot(url)
    assert sum(name.endswith("/.complete") for name in before) == 2  # one marker per bundle
    archive = tmp_path / "s3.tar.gz"
    report = create_backup(url, s3, archive)
    assert report.files == len(before)

    wipe(url, data / "files")
    for entry in list(s3.iter_files()):
        s3.fs.rm_file(s3._key(entry.name))
    assert s3.is_empty()
    restored = restore_backup(archive, url, make_s3_store(s3_env, data / "files"))
    assert restored.missing == [] and _listing(s3) == before and snapshot(url) == rows
    assert (s3.fetch_dir("models/u1/v1") / "bundle.json").is_file()

    local_dir = tmp_path / "local" / "files"
    local_url = f"sqlite:///{tmp_path / 'local' / 'segbot.db'}"
    moved = restore_backup(archive, local_url, local_dir)  # S3 -> local folder
    assert moved.missing == [] and _listing(FileStore(local_dir)) == before
    back = tmp_path / "local.tar"
    create_backup(local_url, local_dir, back)
    other = make_s3_store({**s3_env, "SEGBOT_STORE_URL": s3_env["SEGBOT_STORE_URL"] + "-2"}, tmp_path / "c")
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    assert restore_backup(back, other_url, other).missing == []  # local -> S3
    assert (other.fetch_dir("models/u1/v1") / "weights.pt").is_file()
