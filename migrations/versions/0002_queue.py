"""Schema changes for the queue (issue 7); empty until that work needs one.

Revision ID: 0002_queue
Revises: 0001_initial
"""
from collections.abc import Sequence

revision: str = "0002_queue"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
