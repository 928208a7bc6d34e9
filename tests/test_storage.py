"""Settings, models on both databases, migrations and drift, the file store."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.settings import SettingsError, load_settings
from storage.db import make_engine, session_scope
from storage.files import FileStore, StoreError, StoreFull
from storage.migrate import current_revision, downgrade, head_revision, upgrade
from storage.models import Base, Job, JobState, Notice, TrainedModel, Upload, User

# Settings


def test_defaults_need_no_service(settings) -> None:
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_is_embedded and settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.device == "cpu"
    assert str(settings.data_dir) in settings.database_url


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SEGBOT_DEVICE", "tpu", "setting SEGBOT_DEVICE: must be 'cpu', 'cuda' or 'cuda:N'"),
        ("DATABASE_URL", "mysql://x", "setting DATABASE_URL: must be a sqlite:/// or postgresql:// URL"),
        ("TELEGRAM_API_BASE_URL", "ftp://x", "setting TELEGRAM_API_BASE_URL: must start with http"),
        ("SEGBOT_MAX_UPLOAD_MB", "-1", "setting SEGBOT_MAX_UPLOAD_MB: Input should be greater than 0"),
    ],
)
def test_bad_setting_is_one_line_naming_it(settings, monkeypatch, name, value, expected) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_token_is_never_shown(settings, monkeypatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:SECRET-token-value")
    loaded = load_settings()
    assert loaded.token == "123456:SECRET-token-value"
    assert "SECRET" not in repr(loaded) and "SECRET" not in str(loaded.model_dump())
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "no-colon-SECRET")
    with pytest.raises(SettingsError) as caught:
        load_settings().token  # noqa: B018
    assert "SECRET" not in str(caught.value)


def test_postgres_url_gets_psycopg_driver(settings, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    assert load_settings().database_url == "postgresql+psycopg://postgres@127.0.0.1/test"


def test_cli_bad_setting_exits_with_one_line(settings, monkeypatch) -> None:
    env = dict(os.environ, SEGBOT_DEVICE="gpu0", TELEGRAM_BOT_TOKEN="42:VERYSECRET")
    proc = subprocess.run([sys.executable, "-m", "segbot", "migrate"], env=env, capture_output=True,
                          text=True, cwd=settings.data_dir)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "Error: setting SEGBOT_DEVICE: must be 'cpu', 'cuda' or 'cuda:N'"
    assert "Traceback" not in proc.stderr and "VERYSECRET" not in proc.stderr + proc.stdout


# Database and migrations


def test_migrations_reach_head_without_drift(db_url: str) -> None:
    assert current_revision(db_url) == head_revision(db_url)
    engine = make_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_base_and_back(db_url: str) -> None:
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == head_revision(db_url)


def test_the_old_default_threshold_gives_way_to_segbots_default(db_url: str) -> None:
    """0006: the 0.5 every user got on sign-up becomes NULL (segbot's default); chosen ones stay."""
    from sqlalchemy import text

    from bot.services import snapshot
    from segmodel.options import DEFAULT_SCORE_THRESHOLD

    downgrade(db_url, "0005_bot_state")
    engine = make_engine(db_url)
    insert = text("INSERT INTO users (telegram_id, language, score_threshold, is_admin, preferences, "
                  "created_at, last_seen_at) VALUES (:t, 'en', :v, false, '{}', CURRENT_TIMESTAMP, "
                  "CURRENT_TIMESTAMP)")
    with engine.begin() as connection:
        for telegram_id, value in ((71, 0.5), (72, 0.3)):
            connection.execute(insert, {"t": telegram_id, "v": value})
    engine.dispose()
    upgrade(db_url)
    with session_scope(db_url) as session:
        users = {u.telegram_id: u for u in session.scalars(select(User))}
        assert users[71].score_threshold is None and users[72].score_threshold == 0.3
        assert snapshot(users[71], set()).threshold == DEFAULT_SCORE_THRESHOLD == 0.7
        assert snapshot(users[72], set()).threshold == 0.3
        session.add(User(telegram_id=73))
    with session_scope(db_url) as session:
        assert session.scalars(select(User).where(User.telegram_id == 73)).one().score_threshold is None


def test_models_round_trip_and_cascade(db_url: str) -> None:
    with session_scope(db_url) as session:
        user = User(telegram_id=10**12 + 7, username="chemist", language="ru", nm_per_px=7.34)
        session.add(user)
        session.flush()
        session.add(Upload(user_id=user.id, kind="labelme", original_name="a.json", sha256="a" * 64, size=3))
        job = Job(user_id=user.id, kind="train", params={"arch": "tiny"})
        session.add(job)
        session.flush()
        model = TrainedModel(user_id=user.id, version=1, classes=["particle"], job_id=job.id,
                             metrics={"f1": 0.8})
        session.add(model)
        session.flush()
        user.active_model_id = model.id
        session.add(Notice(user_id=user.id, job_id=job.id, kind="finished", payload={"x": 1}))
    with session_scope(db_url) as session:
        user = session.scalar(select(User).where(User.telegram_id == 10**12 + 7))
        assert user.nm_per_px == pytest.approx(7.34) and user.language == "ru"
        assert session.get(TrainedModel, user.active_model_id).metrics == {"f1": 0.8}
        assert session.scalar(select(Job)).state == JobState.QUEUED
        session.delete(user)
    with session_scope(db_url) as session:
        for table in (Upload, Job, TrainedModel, Notice):
            assert session.scalar(select(func.count()).select_from(table)) == 0


def test_session_scope_commits_rolls_back_and_dry_runs(db_url: str) -> None:
    """The one unit-of-work helper (the queue's locked sessions and `segbot clean` build on it)."""
    from sqlalchemy.orm import sessionmaker

    from storage.db import engine_for

    def users() -> set[int]:
        with session_scope(db_url) as session:
            return set(session.scalars(select(User.telegram_id)))

    with session_scope(db_url) as session:
        session.add(User(telegram_id=1))
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        session.add(User(telegram_id=2))
        session.flush()
        raise RuntimeError("any error")
    with session_scope(db_url, commit=False) as session:
        session.add(User(telegram_id=3))
        session.flush()
        assert session.scalar(select(func.count()).select_from(User)) == 2  # sees its own change
    own = sessionmaker(bind=engine_for(db_url), expire_on_commit=False)
    with session_scope(own) as session:  # a caller's own sessionmaker
        session.add(User(telegram_id=4))
    assert users() == {1, 4}


def test_model_versions_unique_per_user(db_url: str) -> None:
    with pytest.raises(IntegrityError):
        with session_scope(db_url) as session:
            user = User(telegram_id=1)
            session.add(user)
            session.flush()
            session.add_all([TrainedModel(user_id=user.id, version=1),
                             TrainedModel(user_id=user.id, version=1)])
    with pytest.raises(IntegrityError):
        with session_scope(db_url) as session:
            user = User(telegram_id=2)
            session.add(user)
            session.flush()
            job = Job(user_id=user.id, kind="train")
            session.add(job)
            session.flush()
            session.add_all([Notice(user_id=user.id, job_id=job.id, kind="done"),
                             Notice(user_id=user.id, job_id=job.id, kind="done")])


def test_segbot_migrate_command(tmp_path: Path, postgres_url: str) -> None:
    for url in (f"sqlite:///{tmp_path / 'cli.db'}", postgres_url):
        env = dict(os.environ, DATABASE_URL=url, SEGBOT_DATA_DIR=str(tmp_path / "d"))
        proc = subprocess.run([sys.executable, "-m", "segbot", "migrate"], env=env, capture_output=True,
                              text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"database at revision {head_revision(url)}"
        assert current_revision(url) == head_revision(url)


# File store: each test runs on the local folder and on S3 (moto), unless it is about local paths


def test_store_is_content_addressed_and_atomic(any_store) -> None:
    store = any_store
    sha = store.put_bytes(b"particle")
    assert sha == hashlib.sha256(b"particle").hexdigest()
    assert [f.name for f in store.iter_files()] == [f"blobs/{sha[:2]}/{sha}"]
    assert store.read_bytes(sha) == b"particle" and store.exists(sha)
    assert store.put_bytes(b"particle") == sha  # same content, same name, one file
    assert list(store.iter_digests()) == [sha]
    assert store.blob_stat(sha).size == len(b"particle")
    assert not any(store.tmp.iterdir())  # no temp files left behind
    assert store.delete(sha) and not store.exists(sha) and not store.delete(sha)
    with pytest.raises(StoreError):
        store.read_bytes(sha)


def test_failed_write_leaves_nothing(any_store) -> None:
    store = any_store
    with pytest.raises(StoreError):
        store.put_stream(io.BytesIO(b"x" * 5000), max_bytes=1000)
    assert list(store.iter_digests()) == [] and not any(store.tmp.iterdir())
    assert store.is_empty()


def test_disk_full_is_a_clear_error_and_leaves_nothing(any_store, monkeypatch) -> None:
    """ENOSPC injected at the store layer (os.fsync of the spooled copy); the mounted-tmpfs variant
    runs through a real worker in test_queue_faults.py."""
    import errno

    store = any_store
    kept = store.put_bytes(b"already here")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("storage.files.os.fsync", full)
    with pytest.raises(StoreFull, match="disk is full"):
        store.put_bytes(b"y" * 10_000)
    monkeypatch.undo()
    assert list(store.iter_digests()) == [kept] and not any(store.tmp.iterdir())
    assert store.read_bytes(store.put_bytes(b"y" * 10_000)) == b"y" * 10_000  # space is back: works


def test_concurrent_writes_of_same_content(any_store) -> None:
    store = any_store
    payload = os.urandom(1 << 20)
    digests: list[str] = []
    threads = [threading.Thread(target=lambda: digests.append(store.put_bytes(payload))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(digests)) == 1 and store.read_bytes(digests[0]) == payload


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/passwd", "a/../../b", "~/x", "models/../../../etc", "..", "a/..", ""]
)
def test_paths_outside_store_are_refused(any_store, name: str) -> None:
    store = any_store
    with pytest.raises(StoreError):
        target = store.resolve(name)
        if target == store.root:  # "a/.." resolves to the root itself: never a place to write
            raise StoreError("root")
    for call in (store.fetch, store.fetch_dir, store.remove_dir, store.stat):
        with pytest.raises(StoreError):
            call(name if name not in ("a/..",) else "../a")


def test_symlink_out_of_store_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(StoreError):
        store.resolve("link/secret")


@pytest.mark.parametrize("digest", ["", "abc", "../" + "a" * 61, "G" * 64, "a" * 63 + "/"])
def test_bad_digests_refused(any_store, digest: str) -> None:
    for call in (any_store.exists, any_store.read_bytes, any_store.delete):
        with pytest.raises(StoreError):
            call(digest)


def _bundle_source(tmp_path: Path, content: bytes) -> Path:
    source = tmp_path / f"bundle-{hashlib.sha1(content).hexdigest()[:6]}"
    source.mkdir()
    (source / "weights.pt").write_bytes(content)
    (source / "sub").mkdir()
    (source / "sub" / "bundle.json").write_text("{}")
    return source


def test_install_dir_is_all_or_nothing(any_store, tmp_path: Path) -> None:
    store = any_store
    source = _bundle_source(tmp_path, b"w")
    target = store.install_dir(source, "models/u1/v1")
    assert (target / "weights.pt").read_bytes() == b"w" and source.is_dir()  # copied, not moved
    with pytest.raises(StoreError):
        store.install_dir(source, "models/u1/v1")
    with pytest.raises(StoreError):
        store.install_dir(source, "../v2")
    replaced = store.install_dir(_bundle_source(tmp_path, b"second"), "models/u1/v1", replace=True, move=True)
    assert (replaced / "weights.pt").read_bytes() == b"second"
    assert store.has_dir("models/u1/v1") and not store.has_dir("models/u1/v2")
    names = {f.name for f in store.iter_files("models")}
    assert {"models/u1/v1/weights.pt", "models/u1/v1/sub/bundle.json"} <= names
    store.remove_dir("models/u1/v1")
    assert not store.has_dir("models/u1/v1") and store.fetch_dir("models/u1/v1") is None


def test_named_files_publish_and_fetch(any_store) -> None:
    """Checkpoints: written at resolve(name), published, fetched (fresh) by whoever resumes."""
    store = any_store
    name = "scratch/jobs/5/checkpoint.pt"
    assert store.fetch(name) is None
    path = store.resolve(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"iteration 200")
    store.publish(name)
    assert store.stat(name).size == 13
    path.write_bytes(b"iteration 400")
    store.publish(name)
    path.write_bytes(b"stale local copy")  # another machine's cache: fetch gives the stored one
    if isinstance(store, FileStore):
        assert store.fetch(name).read_bytes() == b"stale local copy"  # one copy: it is the store
    else:
        assert store.fetch(name).read_bytes() == b"iteration 400"
    store.remove_dir("scratch/jobs/5")
    assert store.fetch(name) is None and not path.exists()


def test_s3_bundle_cache_follows_the_bucket(s3_env, tmp_path: Path) -> None:
    """Two machines with their own caches: B downloads A's bundle, and a bundle replaced in the
    bucket (an orphan of a died attempt, then the real one) is downloaded again."""
    from tests.conftest import make_s3_store

    a, b = make_s3_store(s3_env, tmp_path / "a"), make_s3_store(s3_env, tmp_path / "b")
    a.install_dir(_bundle_source(tmp_path, b"orphan"), "models/u1/v2")
    assert (b.fetch_dir("models/u1/v2") / "weights.pt").read_bytes() == b"orphan"
    a.install_dir(_bundle_source(tmp_path, b"real"), "models/u1/v2", replace=True)
    assert (b.fetch_dir("models/u1/v2") / "weights.pt").read_bytes() == b"real"
    # Objects without their completion marker (an upload that died half-way) are no bundle.
    b.fs.rm_file(b._key("models/u1/v2/.complete"))
    import shutil

    shutil.rmtree(tmp_path / "b" / "models")
    assert b.fetch_dir("models/u1/v2") is None


def test_store_url_setting_selects_s3(settings, s3_env, monkeypatch) -> None:
    from storage.s3store import S3Store
    from storage.stores import open_store

    assert isinstance(open_store(settings), FileStore)
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SEGBOT_STORE_SECRET_KEY", "s3cr3t-value")  # moto takes any secret
    loaded = load_settings()
    store = open_store(loaded)
    assert isinstance(store, S3Store) and store.describe() == s3_env["SEGBOT_STORE_URL"]
    assert store.root == loaded.files_dir.resolve()  # the cache sits where the local store would
    assert "s3cr3t" not in repr(loaded) and "s3cr3t" not in str(loaded.model_dump())  # never shown
    assert store.read_bytes(store.put_bytes(b"ok")) == b"ok"
    monkeypatch.setenv("SEGBOT_STORE_URL", "https://bucket")
    with pytest.raises(SettingsError, match="SEGBOT_STORE_URL: must be s3://bucket/prefix"):
        load_settings()


def test_migrate_creates_the_bucket(tmp_path: Path, s3_env, s3_endpoint) -> None:
    import boto3

    env = dict(os.environ, SEGBOT_DATA_DIR=str(tmp_path / "d"), **s3_env)
    env["SEGBOT_STORE_URL"] = "s3://segbot-made-by-migrate/files"
    env.pop("DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "segbot", "migrate"], env=env, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "file store s3://segbot-made-by-migrate/files ready"
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    assert "segbot-made-by-migrate" in [b["Name"] for b in client.list_buckets()["Buckets"]]
