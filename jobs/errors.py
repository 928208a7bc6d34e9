"""How a job body stops early: cancelled (keep nothing, say nothing more) or failed with a message
written for the user."""

from __future__ import annotations


class JobCancelled(Exception):
    """The user cancelled the job (or it is no longer this worker's): stop, keep nothing."""


class JobError(Exception):
    """A failure the user can act on; str() is the message shown to them."""
