"""How a job body stops early: cancelled (keep nothing, say nothing more) or failed with a message
written for the user (a Text: the chat shows it in the user's language)."""

from __future__ import annotations

from core.errors import UserError


class JobCancelled(Exception):
    """The user cancelled the job (or it is no longer this worker's): stop, keep nothing."""


class JobError(UserError):
    """A failure the user can act on; `text` is the message shown to them, str() its English."""
