"""Daily digests: subscribers with their schedule, composed editions, one delivery record per local day

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot import schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    schema.create_table(
        "subscriber",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.String(64)),
        sa.Column("topics_json", sa.Text(), nullable=False),
        sa.Column("digest_time", sa.String(5), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("next_due_at", TZ),
        sa.Column("next_due_date", sa.String(10)),
        sa.Column("last_digest_at", TZ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        indexes=[("ix_subscriber_chat_id", ["chat_id"], True), ("ix_subscriber_next_due_at", ["next_due_at"], False),
                 ("ix_subscriber_subscribed", ["subscribed"], False)],
    )
    schema.create_table(
        "digestedition",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("topic_key", sa.Text(), nullable=False),
        sa.Column("since", TZ, nullable=False),
        sa.Column("until", TZ, nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    schema.create_table(
        "digestdelivery",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("subscriber.id"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("local_date", sa.String(10), nullable=False),
        sa.Column("slot_at", TZ, nullable=False),
        sa.Column("edition_id", sa.Integer(), sa.ForeignKey("digestedition.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parts_sent", sa.Integer(), nullable=False),
        sa.Column("parts_total", sa.Integer()),
        sa.Column("message_ids_json", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ),
        sa.UniqueConstraint("subscriber_id", "local_date"),
        indexes=[("ix_digestdelivery_subscriber_id", ["subscriber_id"], False),
                 ("ix_digestdelivery_status", ["status"], False)],
    )


def downgrade() -> None:
    for table in ("digestdelivery", "digestedition", "subscriber"):
        op.drop_table(table)
