"""The bot's state that must survive a restart: pending_states (a JSON waiting for its image, an
album being collected, a pending rename) and notices.parts_sent (multi-part results resume).

Revision ID: 0005_bot_state
Revises: 0004_ops
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_bot_state"
down_revision: str | None = "0004_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "kind", "key", name="uq_pending_states_user_kind_key"),
    )
    with op.batch_alter_table("pending_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_states_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pending_states_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parts_sent", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_column("parts_sent")
    with op.batch_alter_table("pending_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_states_user_id"))
        batch_op.drop_index(batch_op.f("ix_pending_states_expires_at"))
    op.drop_table("pending_states")
