"""The SQL engine of a database URL, and how an outage of it is told from a bug.

    engine = make_engine("sqlite:///var/mendloop.db")   # WAL on SQLite; psycopg 3 on PostgreSQL
    store_outage(exc)                                     # retry later (True) or a bug (False)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import create_engine

from kernel.errors import ConfigError


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_wal(connection: Any, _record: Any) -> None:
    """Write-ahead log: readers (token checks, the API, the web page) go on while a writer
    holds the database, and a writer waits for readers no more."""
    connection.execute("PRAGMA journal_mode=WAL")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError subclasses
        raise ConfigError(f"MENDLOOP_DATABASE_URL={url!r} is not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_wal)
        return engine
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(False))
    return create_engine(url, pool_pre_ping=True)


def store_outage(exc: BaseException) -> bool:
    """The database itself failed (locked past the busy timeout, disk full, read-only,
    unreachable, connection lost, pool exhausted): waiting and retrying can cure it. A bad
    statement or a broken constraint (ProgrammingError, IntegrityError) cannot."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
