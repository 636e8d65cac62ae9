"""Articles, passages with their embeddings, conversations, topics and facts: what answering questions needs

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    schema.create_table(
        "article",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("article_key", sa.String(512), nullable=False),
        sa.Column("external_id", sa.Text()),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("author", sa.Text()),
        sa.Column("dateline", sa.Text()),
        sa.Column("published", TZ),
        sa.Column("url", sa.Text()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("ingested_at", TZ, nullable=False),
        indexes=[("ix_article_article_key", ["article_key"], True), ("ix_article_ingested_at", ["ingested_at"], False),
                 ("ix_article_content_hash", ["content_hash"], False), ("ix_article_published", ["published"], False)],
    )
    schema.create_table(
        "passage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("article_id", sa.Integer(), sa.ForeignKey("article.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("speakers_json", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary()),
        sa.UniqueConstraint("article_id", "position"),
        indexes=[("ix_passage_article_id", ["article_id"], False)],
    )
    schema.create_table(
        "conversation",
        sa.Column("chat_id", sa.String(64), primary_key=True),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    schema.create_table(
        "topic",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("shown_json", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        indexes=[("ix_topic_chat_id", ["chat_id"], False)],
    )
    schema.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "topic", "conversation", "passage", "article"):
        op.drop_table(table)
