"""Schema changes for the operations (issue 9); empty until that work needs one.

Revision ID: 0004_ops
Revises: 0003_bot
"""
from collections.abc import Sequence

revision: str = "0004_ops"
down_revision: str | None = "0003_bot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
