"""Turning expected failures into one clear line and an exit code, for every command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Decorate a click command: SettingsError/AnnotationError/StoreError become `Error: ...`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from annotations.model import AnnotationError
        from storage.files import StoreError
        from storage.settings import SettingsError

        try:
            return func(*args, **kwargs)
        except (SettingsError, AnnotationError, StoreError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]
