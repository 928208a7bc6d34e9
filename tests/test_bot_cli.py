"""`segbot run` itself, as a process, against the stand-in: migrates its own embedded SQLite database
on a fresh install, refuses an unmigrated database it was pointed at, answers /start, stops cleanly on
SIGINT, and its log never shows the token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from storage.migrate import current_revision, head_revision
from tests.botapi.harness import BotApiStandIn, User


def _env(settings, api: BotApiStandIn) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url,
               TELEGRAM_API_BASE_FILE_URL=api.base_file_url, SEGBOT_DATA_DIR=str(settings.data_dir),
               SEGBOT_LOG_LEVEL="DEBUG")
    return env


@pytest.mark.slow
def test_segbot_run_polls_the_stand_in_and_keeps_the_token_out_of_logs(settings) -> None:
    """An empty data dir: no `segbot migrate` first, the embedded database is migrated at start."""
    api = BotApiStandIn().start()
    command = [sys.executable, "-m", "segbot", "run", "--no-worker"]
    assert not (settings.data_dir / "segbot.db").exists() or current_revision(settings.database_url) is None
    try:
        process = subprocess.Popen(command, env=_env(settings, api), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            user = User(4242, "Ann", "ann", "en")
            mark = api.mark()
            api.send_text(user, "/start")
            assert "segbot" in api.wait_reply(user.id, mark, timeout=60).text
        finally:
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output[-2000:]
        migrated = [line for line in output.splitlines() if "migrated to" in line]
        assert len(migrated) == 1 and "revision none" in migrated[0], output[-2000:]
        assert current_revision(settings.database_url) == head_revision(settings.database_url)
        assert "getUpdates" in output or "Application" in output  # it did log (DEBUG)
        assert api.token not in output and api.token.split(":")[1] not in output
    finally:
        api.stop()


def _refused(settings, url: str) -> subprocess.CompletedProcess:
    api = BotApiStandIn().start()
    try:
        env = {**_env(settings, api), "DATABASE_URL": url}
        return subprocess.run([sys.executable, "-m", "segbot", "run", "--no-worker"], env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        api.stop()


@pytest.mark.slow
def test_segbot_run_refuses_an_unmigrated_postgresql_database(settings, postgres_url) -> None:
    """A server database is migrated by its operator: the explicit step stays."""
    refused = _refused(settings, postgres_url)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "revision none" in refused.stderr and "segbot migrate" in refused.stderr
    assert current_revision(postgres_url) is None  # nothing was created behind the operator's back


@pytest.mark.slow
def test_segbot_run_refuses_a_user_given_sqlite_url(settings, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    refused = _refused(settings, url)
    assert refused.returncode == 1 and "segbot migrate" in refused.stderr
    assert current_revision(url) is None
