"""One bucket, several machines with their own caches: what one machine does to a model bundle is
what every other machine sees, and a store that goes away for a moment is waited for
(tests/test_multihost.py runs the same across real network namespaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_s3_store


def _bundle(tmp_path: Path, content: bytes, name: str = "src") -> Path:
    source = tmp_path / name
    source.mkdir()
    (source / "weights.pt").write_bytes(content)
    return source


def test_a_bundle_deleted_on_one_machine_leaves_no_cached_copy_on_another(s3_env, tmp_path: Path) -> None:
    a, b = make_s3_store(s3_env, tmp_path / "a"), make_s3_store(s3_env, tmp_path / "b")
    a.install_dir(_bundle(tmp_path, b"w"), "models/u1/v1")
    cached = b.fetch_dir("models/u1/v1")
    assert (cached / "weights.pt").read_bytes() == b"w"
    a.remove_dir("models/u1/v1")
    assert b.fetch_dir("models/u1/v1") is None and not cached.exists()


def test_deleting_a_model_removes_it_from_the_bucket(settings, s3_env, tmp_path: Path) -> None:
    from bot.accounts import delete_model
    from storage.db import session_scope
    from storage.migrate import upgrade
    from storage.models import TrainedModel, User

    upgrade(settings.database_url)
    bot_host, worker_host = make_s3_store(s3_env, tmp_path / "bot"), make_s3_store(s3_env, tmp_path / "w")
    worker_host.install_dir(_bundle(tmp_path, b"w"), "models/u1/v1")
    with session_scope(settings.database_url) as session:
        user = User(telegram_id=5, language="en")
        session.add(user)
        session.flush()
        model = TrainedModel(user_id=user.id, version=1, status="ready", path=f"files/models/u{user.id}/v1")
        session.add(model)
        session.flush()
        user_id, model_id = user.id, model.id
    assert user_id == 1
    with session_scope(settings.database_url) as session:
        assert delete_model(session, bot_host, user_id, model_id) == 1
    assert list(bot_host.iter_files("models")) == []  # the bucket's copy, not only the bot's
    assert worker_host.fetch_dir("models/u1/v1") is None


def test_store_calls_wait_for_a_server_that_is_restarting(s3_env, tmp_path: Path, monkeypatch) -> None:
    """Unreachable (a restart) is waited for; a refusal is not retried."""
    from botocore.exceptions import EndpointConnectionError

    store = make_s3_store(s3_env, tmp_path / "c")
    real = store.fs.pipe_file
    failures = [EndpointConnectionError(endpoint_url="http://s3")] * 2

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", flaky)
    store.seal_dir("x")  # nothing there: no call
    store.install_dir(_bundle(tmp_path, b"w"), "models/u1/v1")  # its marker goes through pipe_file
    assert failures == [] and store.fetch_dir("models/u1/v1") is not None
    store.retry_s = 0.1
    failures.extend([EndpointConnectionError(endpoint_url="http://s3")] * 3)
    with pytest.raises(EndpointConnectionError):
        store.install_dir(_bundle(tmp_path, b"v", "src2"), "models/u1/v2")
    with pytest.raises(FileNotFoundError):  # no such key: an answer, never retried
        store._call("cat_file", store._key("nothing/here"))


def test_the_model_cache_reloads_when_the_bundle_copy_changed(tmp_path: Path, settings) -> None:
    from jobs.detectors import DetectorCache

    loads: list[str] = []
    cache = DetectorCache(lambda path, _settings: loads.append((path / ".complete").read_text()) or object())
    bundle = tmp_path / "v1"
    bundle.mkdir()
    (bundle / ".complete").write_text("first")
    first = cache.get(("m", 1), lambda: bundle, settings)
    assert cache.get(("m", 1), lambda: bundle, settings) is first and loads == ["first"]
    (bundle / ".complete").write_text("second")  # re-installed from another machine
    assert cache.get(("m", 1), lambda: bundle, settings) is not first and loads == ["first", "second"]
