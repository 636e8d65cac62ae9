"""`briefbot migrate`: the database schema from the terminal (bot/schema.py does the work).

Every command that opens the database upgrades it anyway; this one is for operators who want to see what is
pending, review the SQL, or migrate before starting several replicas.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import make_url

from bot import schema
from bot.settings import Settings
from bot.storage import make_engine


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Upgrade to head; `current`: where the database is and what is pending; `--sql`: the SQL, nothing run."""
    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        state = schema.status(engine)
        if args.action == "current":
            print(f"database: {make_url(url).render_as_string(hide_password=True)}")
            print(f"current: {state.current or 'none (an empty database, or one made before migrations)'}")
            print(f"head: {state.head}")
            if state.at_head:
                print("at head: nothing to migrate")
            for revision, doc in state.pending:
                print(f"pending: {revision}  {(doc or '').splitlines()[0] if doc else ''}")
            return 0
        if args.sql:
            sys.stdout.write(schema.upgrade_sql(url, state.current))
            return 0
        if state.at_head:
            print(f"already at head ({state.head})")
            return 0
        schema.upgrade(engine)
        print(f"migrated {state.current or 'empty'} -> {schema.current_revision(engine)} "
              f"({len(state.pending)} migration(s))")
        return 0
    finally:
        engine.dispose()


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("migrate", parents=[common],
                       help="bring the database schema to the newest migration (`current`: show where it is)")
    p.add_argument("action", nargs="?", choices=["upgrade", "current"], default="upgrade",
                   help="upgrade (default) or current")
    p.add_argument("--sql", action="store_true", help="print the SQL the upgrade would run, change nothing")
