"""Hosts for the multi-host test: one network namespace per host on a private bridge.

Each host gets a namespace `sg<tag>-<name>` with one veth end (`eth0`, an address in the test's own
10.231.<n>.0/24) whose other end sits on a bridge in this namespace; this namespace takes the
subnet's `.1` (the Bot API stand-in listens there). Nothing routes out of the subnet: the hosts
reach only each other and the stand-in. Each host also gets its own hostname (a UTS namespace),
so a worker's name (`hostname:pid`, jobs.worker) says which host ran a job.

Needs root and iproute2; a missing `ip` or no privilege goes through need_service (fails under CI).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from tests.services import need_service


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    name: str  # the host's name (and hostname inside it)
    netns: str  # the namespace's name
    address: str  # its address on the test network
    veth: str  # the end on the bridge: down = the host is cut off

    def wrap(self, argv: list[str], cpus: str | None = None) -> list[str]:
        """`argv` run on this host: its namespace, its hostname, optionally pinned to `cpus`."""
        inner = ["taskset", "-c", cpus, *argv] if cpus else argv
        script = f'hostname {self.name} && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", script, "sh", *inner]

    def pids(self) -> list[int]:
        proc = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in proc.stdout.split()]

    def kill_all(self) -> int:
        """SIGKILL every process on this host, as if it lost power; how many there were."""
        killed = 0
        for _ in range(20):  # a dying parent may still fork: look again until none is left
            pids = self.pids()
            if not pids:
                return killed
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"processes left on {self.name}: {self.pids()}")

    def cut(self) -> None:
        _ip("link", "set", self.veth, "down")

    def reconnect(self) -> None:
        _ip("link", "set", self.veth, "up")


@dataclass
class Network:
    """The bridge and the hosts on it; `close()` kills every host's processes and removes it all."""

    subnet: int = field(default_factory=lambda: random.randint(1, 250))
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000:04d}")
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"sgbr{self.tag}"

    @property
    def gateway(self) -> str:
        return f"10.231.{self.subnet}.1"

    def start(self) -> Network:
        if shutil.which("ip") is None or shutil.which("unshare") is None:
            need_service("ip/unshare (iproute2, util-linux)", "not found: the multi-host test needs them")
        if os.geteuid() != 0:
            need_service("root", "needed to make network namespaces")
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        index = len(self.hosts) + 2
        host = Host(name, f"sg{self.tag}-{name}", f"10.231.{self.subnet}.{index}", f"sg{self.tag}h{index}")
        _ip("netns", "add", host.netns)
        self.hosts[name] = host
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", f"sg{self.tag}n{index}")
        _ip("link", "set", f"sg{self.tag}n{index}", "netns", host.netns, "name", "eth0")
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        inside = ("ip", "netns", "exec", host.netns, "ip")
        for args in (("addr", "add", f"{host.address}/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("link", "set", "lo", "up")):
            subprocess.run([*inside, *args], check=True, capture_output=True, timeout=30)
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            try:
                host.kill_all()
            finally:
                _ip("netns", "del", host.netns, check=False)  # its veth pair goes with it
        _ip("link", "del", self.bridge, check=False)
