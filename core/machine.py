"""What machine this is, in the words benchmarks and manifests record it by (Linux /proc, else
`platform`)."""

from __future__ import annotations

import platform
from pathlib import Path


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """e.g. 'AMD EPYC 7B13' (/proc/cpuinfo's model name), else what `platform` knows."""
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """The machine's memory in GiB (/proc/meminfo MemTotal); None where it cannot be read."""
    found = _proc_field("/proc/meminfo", "MemTotal")
    return int(found.split()[0]) / 2**20 if found else None
