"""users.score_threshold NULL means segbot's default (segmodel.options.DEFAULT_SCORE_THRESHOLD, now
0.7), so a better default reaches every user who never chose one. Rows holding 0.5, the old default
every user got on sign-up, become NULL: a user who typed /threshold 0.5 cannot be told apart and
gets the new default too (the bot's /threshold shows it and sets it back in one command).

Revision ID: 0006_default_threshold
Revises: 0005_bot_state
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_default_threshold"
down_revision: str | None = "0005_bot_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_DEFAULT = 0.5


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("score_threshold", existing_type=sa.Float(), nullable=True)
    op.execute(sa.text("UPDATE users SET score_threshold = NULL WHERE score_threshold = :old")
               .bindparams(old=OLD_DEFAULT))


def downgrade() -> None:
    op.execute(sa.text("UPDATE users SET score_threshold = :old WHERE score_threshold IS NULL")
               .bindparams(old=OLD_DEFAULT))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("score_threshold", existing_type=sa.Float(), nullable=False)
