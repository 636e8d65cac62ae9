"""Sentence vectors: each passage's sentences pooled from its own encoder pass, for the bold sentence

Passages stored before have none and keep working: their sentences are encoded when shown.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot import schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.add_column("passage", sa.Column("sentence_vectors", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passage") as table:
        table.drop_column("sentence_vectors")
