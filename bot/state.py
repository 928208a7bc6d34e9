"""The kinds of state the bot keeps per user in the database (storage.pending) and how long each
lives: long enough to outlast a bot restart, short enough that a forgotten one does not linger."""

from __future__ import annotations

from datetime import timedelta

AWAITING_IMAGE = "awaiting"  # key: the image's name, lower case; payload: the LabelMe JSON waiting for it
ALBUM = "album"  # key: "<media group>:<message id>"; payload: that message (an album arrives piecewise)
RENAME = "rename"  # key: ""; payload: {"model_id"}: the next text is that model's new name
TTL = {
    AWAITING_IMAGE: timedelta(days=1),
    ALBUM: timedelta(hours=1),
    RENAME: timedelta(minutes=30),
}
KEY_MAX = 255  # pending_states.key


def image_key(name: str) -> str:
    return name.lower()[:KEY_MAX]
