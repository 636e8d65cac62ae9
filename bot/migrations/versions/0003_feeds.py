"""Feeds: what the bot polls (schedule, validators, failures) and which entries it has read

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot import schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    schema.create_table(
        "feed",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False, unique=True),
        sa.Column("title", sa.Text()),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("etag", sa.Text()),
        sa.Column("last_modified", sa.Text()),
        sa.Column("last_polled_at", TZ),
        sa.Column("last_success_at", TZ),
        sa.Column("next_poll_at", TZ, nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", TZ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("notify_chat_id", sa.BigInteger()),
        sa.Column("created_at", TZ, nullable=False),
        indexes=[("ix_feed_next_poll_at", ["next_poll_at"], False)],
    )
    schema.create_table(
        "feedentry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("feed_id", sa.Integer(), sa.ForeignKey("feed.id"), nullable=False),
        sa.Column("entry_key", sa.String(512), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("article_key", sa.String(512)),
        sa.Column("full_text", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("first_seen_at", TZ, nullable=False),
        sa.Column("last_attempt_at", TZ),
        sa.UniqueConstraint("feed_id", "entry_key"),
        indexes=[("ix_feedentry_feed_id", ["feed_id"], False)],
    )


def downgrade() -> None:
    op.drop_table("feedentry")
    op.drop_table("feed")
