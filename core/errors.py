"""The error base every package raises for a failure its user can fix. str() is the message for
that user: entry points print it as one line (segbot.errors.user_errors) or send it to the chat."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or settings, explained in words the user can act on; never our own bug."""
