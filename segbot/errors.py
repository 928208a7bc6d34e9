"""Turning expected failures into one clear line and an exit code, for every command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from core.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Decorate a click command: a UserError (settings, annotations, store, options) becomes `Error: ...`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]
