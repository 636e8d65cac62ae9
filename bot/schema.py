"""The database schema is made and changed by Alembic migrations (bot/migrations/versions), never by create_all.

`upgrade(engine)` runs at start-up (Store does it) and by `briefbot migrate`; it costs one SELECT when the
database is already at head. The migrations are written so they also adopt a database made before there were
migrations (by create_all): a table or column that is already there is left alone, so such a database is
brought to head without losing anything. The helpers below are what the migration files use for that.

A new table or column in bot/storage.py needs a migration (`alembic revision -m "..."` with the repository's
alembic.ini, then edit it); tests/test_migrations.py fails while models and migrations disagree.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(url: str | None = None, connection: Connection | None = None,
                   output: io.TextIOBase | None = None) -> Config:
    """A Config for bot/migrations without an ini file; `connection` is used as it is (and its transaction)."""
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration's id (read from the files once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "bot/migrations/versions has no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database or one made before migrations.

    Read directly (one SELECT) rather than through Alembic, which logs at every start-up of every command.
    """
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(VERSION_TABLE):
            return None
        heads = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(heads) > 1:  # pragma: no cover - this project's history has no branches
        raise RuntimeError(f"the database has several schema heads: {heads}")
    return heads[0] if heads else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (head by default), in one transaction where the database allows it."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection=connection), revision)
    log.info("database schema at %s", current_revision(engine))


@dataclass
class Status:
    current: str | None
    head: str
    pending: list[tuple[str, str]]  # (revision, what it does), oldest first

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def status(engine: Engine) -> Status:
    """Where the database is, and which migrations `upgrade` would run."""
    scripts = ScriptDirectory.from_config(alembic_config())
    current = current_revision(engine)
    pending = [(s.revision, s.doc) for s in scripts.iterate_revisions("head", current or "base")]
    return Status(current, head_revision(), list(reversed(pending)))


def upgrade_sql(url: str, since: str | None) -> str:
    """The SQL `upgrade` would run from revision `since` (None: an empty database), without touching anything."""
    output = io.StringIO()
    span = f"{since}:head" if since else "head"
    command.upgrade(alembic_config(url=url, output=output), span, sql=True)
    return output.getvalue()


# --- helpers for the migration files: idempotent, so a database made before migrations is adopted --------------
def _inspector() -> sa.Inspector | None:
    """None when printing SQL (offline): there is no database to look at, so everything is made."""
    if op.get_context().as_sql:
        return None
    return sa.inspect(op.get_bind())


def has_table(name: str) -> bool:
    inspector = _inspector()
    return inspector is not None and inspector.has_table(name)


def create_table(name: str, *columns: Any, indexes: list[tuple[str, list[str], bool]] = (), **kwargs: Any) -> None:
    """Create a table with its indexes ((name, columns, unique)), unless it exists (then only missing indexes)."""
    if not has_table(name):
        op.create_table(name, *columns, **kwargs)
        for index, cols, unique in indexes:
            op.create_index(index, name, cols, unique=unique)
        return
    existing = {ix["name"] for ix in _inspector().get_indexes(name)}
    for index, cols, unique in indexes:
        if index not in existing:
            op.create_index(index, name, cols, unique=unique)


def add_column(table: str, column: sa.Column) -> None:
    """Add a column unless the table has it already."""
    inspector = _inspector()
    if inspector is not None and column.name in {c["name"] for c in inspector.get_columns(table)}:
        return
    op.add_column(table, column)


def timestamps_to_utc_aware() -> None:
    """PostgreSQL: turn `timestamp` columns (a database made by create_all before this) into `timestamptz`,
    reading the stored values as UTC, which is what the application always wrote."""
    inspector = _inspector()
    if inspector is None or op.get_bind().dialect.name != "postgresql":
        return
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            kind = column["type"]
            if isinstance(kind, sa.DateTime) and not kind.timezone:
                op.execute(sa.text(f'ALTER TABLE "{table}" ALTER COLUMN "{column["name"]}" '
                                   f'TYPE timestamptz USING "{column["name"]}" AT TIME ZONE \'UTC\''))


def widen_to_text(columns: dict[str, list[str]]) -> None:
    """PostgreSQL: make bounded VARCHAR columns TEXT (no rewrite needed), for databases made before this."""
    inspector = _inspector()
    if inspector is None or op.get_bind().dialect.name != "postgresql":
        return
    for table, names in columns.items():
        if not inspector.has_table(table):
            continue
        for column in inspector.get_columns(table):
            if column["name"] in names and isinstance(column["type"], sa.String) and column["type"].length:
                op.execute(sa.text(f'ALTER TABLE "{table}" ALTER COLUMN "{column["name"]}" TYPE text'))
