"""The error base every package raises for a failure its user can fix. str() is the message for
that user: entry points print it as one line (segbot.errors.user_errors) or send it to the chat."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or settings, explained in words the user can act on; never our own bug."""


class InputError(UserError):
    """A file or value the user sent that cannot be used (an image, a LabelMe file, a scale).

    Subclasses name the problem (imaging.errors, annotations.errors); `code` is a stable identifier
    for tests and translations."""

    code = "bad_input"
