"""Schema changes for the bot (issue 8); empty until that work needs one.

Revision ID: 0003_bot
Revises: 0002_queue
"""
from collections.abc import Sequence

revision: str = "0003_bot"
down_revision: str | None = "0002_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
