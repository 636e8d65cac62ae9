"""Several bot processes on one database: claims and leases for the digest fan-out, versioned conversations

Also adopts a PostgreSQL database made by create_all before migrations: its naive timestamps (always UTC)
become timestamptz, and free-text columns that were VARCHAR(n) become TEXT.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot import schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    schema.timestamps_to_utc_aware()
    schema.widen_to_text({"article": ["external_id", "source", "author", "dateline"], "feed": ["last_modified"]})
    schema.add_column("conversation", sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
    schema.add_column("subscriber", sa.Column("claimed_by", sa.String(64)))
    schema.add_column("subscriber", sa.Column("claimed_until", TZ))
    schema.add_column("digestdelivery", sa.Column("lease_until", TZ))


def downgrade() -> None:
    with op.batch_alter_table("digestdelivery") as table:
        table.drop_column("lease_until")
    with op.batch_alter_table("subscriber") as table:
        table.drop_column("claimed_until")
        table.drop_column("claimed_by")
    with op.batch_alter_table("conversation") as table:
        table.drop_column("version")
