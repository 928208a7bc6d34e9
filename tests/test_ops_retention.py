"""Retention never deletes a referenced file; per-user usage adds up."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ops.retention import missing_references, run_cleanup, usage_by_user
from storage.db import session_scope
from storage.files import FileStore
from storage.migrate import upgrade
from storage.models import Dataset, Job, Notice, Result, TrainedModel, Upload, User

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)


def _age(path: Path, when: datetime = OLD) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def _bundle(store: FileStore, tmp: Path, relative: str, size: int) -> Path:
    src = tmp / "bundle"
    src.mkdir(exist_ok=True)
    (src / "weights.pt").write_bytes(b"w" * size)
    target = store.install_dir(src, relative)
    for path in (target / "weights.pt", target):
        _age(path)
    return target


def build(url: str, files_dir: Path, tmp: Path) -> dict[str, object]:
    store = FileStore(files_dir)
    blob = {}
    for name, size in [("old_alone", 1000), ("old_shared", 2000), ("old_in_dataset", 3000), ("new", 4000),
                       ("old_overlay", 5000), ("old_csv_in_job", 600), ("new_overlay", 700),
                       ("orphan_old", 800), ("orphan_young", 900), ("in_active_job", 1100)]:
        blob[name] = store.put_bytes(name.encode().ljust(size, b"."))
        if name != "orphan_young" and not name.startswith("new"):
            _age(store.path_for(blob[name]))
    keep_dir = _bundle(store, tmp, "models/u1/v1", 10_000)
    orphan_dir = _bundle(store, tmp, "models/u1/v9", 20_000)
    with session_scope(url) as session:
        chemist, other = User(telegram_id=1, username="chemist"), User(telegram_id=2)
        session.add_all([chemist, other])
        session.flush()
        up = {name: Upload(user_id=chemist.id, kind="labelme", original_name=f"{name}.json",
                           sha256=blob[name], size=len(store.read_bytes(blob[name])), created_at=OLD)
              for name in ("old_alone", "old_shared", "old_in_dataset", "in_active_job")}
        up["new_copy"] = Upload(user_id=other.id, kind="image", original_name="same.png",
                                sha256=blob["old_shared"], size=2000, created_at=NOW)
        up["new"] = Upload(user_id=chemist.id, kind="image", original_name="new.png", sha256=blob["new"],
                           size=4000, created_at=NOW)
        session.add_all(up.values())
        session.flush()
        dataset = Dataset(user_id=chemist.id, uploads=[up["old_in_dataset"]])
        session.add(dataset)
        session.flush()
        session.add(TrainedModel(user_id=chemist.id, version=1, path="files/models/u1/v1",
                                 dataset_id=dataset.id, created_at=OLD))
        job = Job(user_id=chemist.id, kind="predict", state="succeeded", created_at=OLD,
                  result={"archive": blob["old_csv_in_job"]})
        waiting = Job(user_id=chemist.id, kind="predict", state="queued",
                      params={"upload_ids": [up["in_active_job"].id], "model_id": 1})
        session.add_all([job, waiting])
        session.flush()
        session.add_all([
            Result(job_id=job.id, user_id=chemist.id, created_at=OLD,
                   files={"overlay": blob["old_overlay"], "csv": blob["old_csv_in_job"]}),
            Result(job_id=job.id, user_id=chemist.id, created_at=NOW, files={"overlay": blob["new_overlay"]}),
            Notice(user_id=chemist.id, job_id=job.id, kind="predict_done", created_at=OLD, sent_at=OLD),
        ])
    return {"blob": blob, "keep_dir": keep_dir, "orphan_dir": orphan_dir, "store": store}


def _state(url: str, store: FileStore) -> tuple:
    with session_scope(url) as session:
        counts = tuple(session.scalar(select(func.count()).select_from(t)) for t in (Upload, Result, Notice))
    bundles = sorted(p.name for p in (store.root / "models" / "u1").iterdir())
    return counts, sorted(store.iter_digests()), bundles


def test_cleanup_deletes_only_what_nothing_references(db_url: str, tmp_path: Path) -> None:
    files_dir = tmp_path / "data" / "files"
    world = build(db_url, files_dir, tmp_path)
    blob, store = world["blob"], world["store"]
    before = _state(db_url, store)

    dry = run_cleanup(db_url, files_dir, 30, dry_run=True, now=NOW)
    assert _state(db_url, store) == before  # a dry run changes nothing
    real = run_cleanup(db_url, files_dir, 30, now=NOW)
    assert (dry.uploads, dry.results, dry.notices, dry.blobs, dry.model_dirs, dry.bytes_freed) == \
        (real.uploads, real.results, real.notices, real.blobs, real.model_dirs, real.bytes_freed)

    # rows: old_alone and old_shared uploads, the old result and the sent notice
    assert (real.uploads, real.results, real.notices) == (2, 1, 1)
    left = set(store.iter_digests())
    gone = {blob["old_alone"], blob["old_overlay"], blob["orphan_old"]}
    assert left.isdisjoint(gone) and real.blobs == 3
    for kept in ("old_shared", "old_in_dataset", "new", "old_csv_in_job", "new_overlay", "orphan_young",
                 "in_active_job"):
        assert blob[kept] in left, kept
    assert world["keep_dir"].is_dir() and not world["orphan_dir"].exists() and real.model_dirs == 1
    assert real.bytes_freed == 1000 + 5000 + 800 + 20_000
    assert missing_references(db_url, files_dir) == []
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(TrainedModel)) == 1  # models stay

    again = run_cleanup(db_url, files_dir, 30, now=NOW)  # idempotent
    assert (again.uploads, again.results, again.blobs, again.model_dirs) == (0, 0, 0, 0)


def test_usage_by_user(db_url: str, tmp_path: Path) -> None:
    files_dir = tmp_path / "data" / "files"
    world = build(db_url, files_dir, tmp_path)
    with session_scope(db_url) as session:
        rows = usage_by_user(session, world["store"])
    chemist = next(r for r in rows if r.username == "chemist")
    other = next(r for r in rows if r.telegram_id == 2)
    assert (chemist.uploads, chemist.results, chemist.models) == (5, 2, 1)
    assert chemist.upload_bytes == 1000 + 2000 + 3000 + 4000 + 1100
    assert chemist.result_bytes == 5000 + 600 + 700
    assert chemist.model_bytes == 10_000
    assert other.upload_bytes == 2000 and other.total_bytes == 2000  # a shared blob counts for both
    assert rows[0] is chemist  # largest first


@pytest.mark.slow
def test_cli_clean_and_usage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'segbot.db'}"
    upgrade(url)
    build(url, data / "files", tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL")}
    env.update(SEGBOT_DATA_DIR=str(data), SEGBOT_RETENTION_DAYS="30")
    run = lambda *args: subprocess.run([sys.executable, "-m", "segbot", *args], env=env,  # noqa: E731
                                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    proc = run("clean", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would delete: 2 uploads, 1 results, 1 notices (rows)" in proc.stdout
    assert "would delete: 3 unreferenced files, 1 orphaned model dirs" in proc.stdout
    proc = run("admin", "usage")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["1", "@chemist", "5", "2", "1", "27.4", "kB"]
    assert lines[2].split() == ["2", "1", "0", "0", "2.0", "kB"]
    assert lines[-1].startswith("total 29.4 kB for 2 users;")
    assert run("clean", "--days", "-1").returncode == 2
    proc = run("clean")
    assert proc.returncode == 0 and "deleted: 2 uploads" in proc.stdout


def test_cleanup_on_both_backends_keeps_what_rows_name(any_store, tmp_path: Path) -> None:
    """The same rules on the local folder and on S3, where file ages are the objects'
    LastModified (not settable, so the clock is moved on instead), plus checkpoints: those of
    ended jobs go, those of jobs that may still resume stay."""
    store = any_store
    url = f"sqlite:///{tmp_path / 'segbot.db'}"
    upgrade(url)
    kept, orphan = store.put_bytes(b"named by an upload"), store.put_bytes(b"named by nothing")
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.pt").write_bytes(b"w" * 300)
    store.install_dir(src, "models/u1/v1")
    store.install_dir(src, "models/u1/v7")  # a bundle no row names (its job died before committing)
    for job_id in (1, 2):
        path = store.resolve(f"scratch/jobs/{job_id}/checkpoint.pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"c" * 50)
        store.publish(f"scratch/jobs/{job_id}/checkpoint.pt")
    with session_scope(url) as session:
        user = User(telegram_id=5)
        session.add(user)
        session.flush()
        session.add(Upload(user_id=user.id, kind="image", original_name="a.png", sha256=kept, size=18))
        session.add(TrainedModel(user_id=user.id, version=1, path="files/models/u1/v1"))
        session.add_all([Job(id=1, user_id=user.id, kind="train", state="failed"),
                         Job(id=2, user_id=user.id, kind="train", state="queued")])  # requeued
    later = NOW + timedelta(days=2)  # past the grace period, within retention
    report = run_cleanup(url, store, 30, now=later)
    assert (report.blobs, report.model_dirs, report.checkpoints) == (1, 1, 1)
    assert set(store.iter_digests()) == {kept} and not store.exists(orphan)
    assert store.has_dir("models/u1/v1") and not store.has_dir("models/u1/v7")
    assert store.fetch("scratch/jobs/2/checkpoint.pt") is not None  # job 2 may still resume
    assert store.fetch("scratch/jobs/1/checkpoint.pt") is None
    assert missing_references(url, store) == []
    with session_scope(url) as session:
        (usage,) = usage_by_user(session, store)
    assert (usage.upload_bytes, usage.model_bytes) == (18, store.dir_size("models/u1/v1"))
    young = run_cleanup(url, store, 30, now=NOW)  # nothing young is ever touched
    assert (young.blobs, young.model_dirs) == (0, 0)
