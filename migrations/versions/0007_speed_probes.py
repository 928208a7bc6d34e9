"""speed_probes: each worker machine's measured training speed, taken at worker start-up, so a
new install's first time estimate is this machine's and not the benchmark table's.

Revision ID: 0007_speed_probes
Revises: 0006_default_threshold
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_speed_probes"
down_revision: str | None = "0006_default_threshold"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "speed_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("device_kind", sa.String(length=16), nullable=False),
        sa.Column("timing", sa.JSON(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_speed_probes_host", "speed_probes", ["host"])
    op.create_index("ix_speed_probes_measured_at", "speed_probes", ["measured_at"])


def downgrade() -> None:
    op.drop_index("ix_speed_probes_measured_at", table_name="speed_probes")
    op.drop_index("ix_speed_probes_host", table_name="speed_probes")
    op.drop_table("speed_probes")
