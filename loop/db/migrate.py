"""The schema applied at start, by Alembic, on SQLite and PostgreSQL alike.

    ensure_schema(engine)      # once per engine and process: `upgrade head`
    current_revision(engine)   # what the database is at ("0002", ...; None: nothing yet)

Every owner of a table (IncidentStore, Ledger, OutcomeOutbox, TokenStore, AuditLog,
ThreadStore) calls ``ensure_schema`` on its engine; the first call per engine does the
work. A database made before Alembic (today's tables, no ``alembic_version``) is adopted,
never dropped: what that code would have created or added by hand is completed
(``BASELINE.create_all`` for missing tables, the two JSON columns it added with ALTER
TABLE), the database is stamped at the baseline revision and then upgraded like any other.
On PostgreSQL the whole of it holds an advisory lock, so workers starting together migrate
once; on SQLite the file's write lock does the same, and a worker that lost the race finds
the database at head.
"""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
BASELINE_REVISION = "0001"
_LOCK_KEY = 0x6D656E64  # "mend": the PostgreSQL advisory lock of the migration
_ATTEMPTS = 3

_migrated: weakref.WeakSet[Engine] = weakref.WeakSet()
_guard = threading.Lock()


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _baseline() -> tuple[MetaData, dict[str, tuple[str, ...]]]:
    """The baseline revision's tables and the columns the old code added by hand."""
    module = ScriptDirectory(str(MIGRATIONS)).get_revision(BASELINE_REVISION).module
    return module.BASELINE, module.ADDED_BY_HAND


def _adopt_legacy(connection: Connection) -> bool:
    """A database made before Alembic: complete it as that code would have, then stamp it
    at the baseline. False when there is nothing to adopt (new, or Alembic's already)."""
    tables = set(inspect(connection).get_table_names())
    baseline, added_by_hand = _baseline()
    if "alembic_version" in tables or not tables & set(baseline.tables):
        return False
    baseline.create_all(connection, checkfirst=True)  # tables made only when a feature ran
    for table, columns in added_by_hand.items():
        have = {c["name"] for c in inspect(connection).get_columns(table)}
        for name in columns:
            if name not in have:
                connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} JSON"))
    command.stamp(_config(connection), BASELINE_REVISION)
    return True


def upgrade(engine: Engine) -> None:
    """Adopt a database from before Alembic, then ``upgrade head``, in one transaction."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        _adopt_legacy(connection)
        command.upgrade(_config(connection), "head")


def ensure_schema(engine: Engine) -> None:
    """The schema at head on ``engine`` (once per engine in this process). Another worker
    migrating the same SQLite file at the same moment: the loser retries and finds head."""
    if engine in _migrated:
        return
    with _guard:
        if engine in _migrated:
            return
        for attempt in range(_ATTEMPTS):
            try:
                upgrade(engine)
                break
            except DBAPIError:
                if current_revision(engine) == head_revision():
                    break
                if attempt + 1 == _ATTEMPTS:
                    raise
                time.sleep(0.2 * (attempt + 1))
        _migrated.add(engine)
