"""Alembic's entry point for Briefbot's migrations (bot/schema.py runs it; so does `briefbot migrate`).

Online: on the connection bot/schema.py hands over (or one made from `sqlalchemy.url`). On PostgreSQL an
advisory lock makes replicas that start together migrate one after the other; the second finds the schema at
head and does nothing. Offline (`briefbot migrate --sql`): the SQL is printed instead of run.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import bot.storage  # noqa: F401 - registers the tables on SQLModel.metadata
from bot.settings import Settings
from bot.storage import make_engine

MIGRATION_LOCK = 0x62726266  # "brbf": the PostgreSQL advisory lock held while migrating

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    """The URL bot/schema.py passed, or (the `alembic` command line) the application's own database."""
    return config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
