"""Private PostgreSQL and Redis servers for the fault tests, which restart them: the shared
servers other tests use are never touched. Binaries: initdb/pg_ctl and redis-server on PATH
(or PostgreSQL's lib dir). Missing one fails the test under CI=true and skips it elsewhere."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import free_port
from tests.services import need_service


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        need_service(name, "not found: the fault tests start their own server")
    return found


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


Wrap = Callable[[list[str]], list[str]]  # a command as run on another host (tests/netns.py)


def _here(argv: list[str]) -> list[str]:
    return argv


class PrivatePostgres:
    """initdb into a temp dir (owned by `postgres` when we are root: the server refuses root).
    `host` is the address it listens on; `wrap` runs its commands on another host (a namespace)."""

    def __init__(self, host: str = "127.0.0.1", wrap: Wrap = _here) -> None:
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        self.host, self.wrap = host, wrap
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="segbot-pg-"))
        self.data = self.dir / "data"
        self.as_user = "postgres" if os.geteuid() == 0 else None
        if self.as_user:
            shutil.chown(self.dir, self.as_user)
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        if host != "127.0.0.1":  # clients come from the other hosts of the test's network
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {host.rsplit('.', 1)[0]}.0/24 trust\n")
        self.url = f"postgresql+psycopg://postgres@{host}:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if self.as_user:
            command = ["su", self.as_user, "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]
        proc = subprocess.run(self.wrap(command), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"{argv[0]} failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except AssertionError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """redis-server on its own port, no persistence: a restart loses every message."""

    def __init__(self, host: str = "127.0.0.1", wrap: Wrap = _here) -> None:
        self.binary = _binary("redis-server")
        self.host, self.wrap = host, wrap
        self.port = free_port()
        self.url = f"redis://{host}:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        guarded = "yes" if self.host == "127.0.0.1" else "no"  # else the test's own network (tests/netns.py)
        self.proc = subprocess.Popen(self.wrap([self.binary, "--port", str(self.port), "--bind", self.host,
                                                "--save", "", "--appendonly", "no", "--daemonize", "no",
                                                "--protected-mode", guarded]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        def answers() -> bool:
            try:
                return bool(redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5).ping())
            except Exception:  # noqa: BLE001
                return False

        _wait(answers, 30, "the private redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # as if it crashed: nothing is saved
            self.proc.wait(timeout=10)
        self.proc = None
