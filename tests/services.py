"""What a test needs from outside the repository: PostgreSQL, Redis, RabbitMQ, a dev tool, the
shared data sets. Missing is a skip on a developer's machine and a failure under CI=true, where
all of them must be there: a CI run can never pass by skipping what it did not test."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_service(name: str, reason: str) -> NoReturn:
    """Stop the test because `name` is missing: pytest.fail under CI=true, pytest.skip elsewhere."""
    message = f"{name} {reason}"
    if IN_CI:
        pytest.fail(message + " - CI must run against it", pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Something accepts TCP connections there (told apart from the code under test failing)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
