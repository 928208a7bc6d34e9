"""The error base every package raises for a failure its user can fix. str() is the message for
that user in English: entry points print it as one line (segbot.errors.user_errors); the bot renders
its `text` in the user's language (core.i18n.render)."""

from __future__ import annotations

from typing import Any

from core.i18n import Text


class UserError(Exception):
    """Bad input or settings, explained in words the user can act on; never our own bug.

    `text` is the message as a Text (N_/NP_), to be rendered in the user's language; a plain English
    str is kept as it is (messages only an operator reads: settings, the CLI)."""

    def __init__(self, text: Text | str = "") -> None:
        super().__init__(str(text))
        self.text = text

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.__class__, (self.text,)  # pickled (from a worker process) with its Text


class InputError(UserError):
    """A file or value the user sent that cannot be used (an image, a LabelMe file, a scale).

    Subclasses name the problem (imaging.errors, annotations.errors); `code` is a stable identifier
    for tests."""

    code = "bad_input"
