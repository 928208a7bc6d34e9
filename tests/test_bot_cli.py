"""`segbot run` itself, as a process, against the stand-in: refuses an unmigrated database, answers
/start, stops cleanly on SIGINT, and its log never shows the token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from storage.migrate import upgrade
from tests.botapi.harness import BotApiStandIn, User


def _env(settings, api: BotApiStandIn) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url,
               TELEGRAM_API_BASE_FILE_URL=api.base_file_url, SEGBOT_DATA_DIR=str(settings.data_dir),
               SEGBOT_LOG_LEVEL="DEBUG")
    return env


@pytest.mark.slow
def test_segbot_run_polls_the_stand_in_and_keeps_the_token_out_of_logs(settings) -> None:
    api = BotApiStandIn().start()
    command = [sys.executable, "-m", "segbot", "run", "--no-worker"]
    try:
        refused = subprocess.run(command, env=_env(settings, api), capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "segbot migrate" in refused.stderr
        upgrade(settings.database_url)
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
        assert "getUpdates" in output or "Application" in output  # it did log (DEBUG)
        assert api.token not in output and api.token.split(":")[1] not in output
    finally:
        api.stop()
