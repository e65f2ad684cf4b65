"""Several workers on a real PostgreSQL (MENDLOOP_TEST_POSTGRES_URL; CI starts the Debian
cluster): each test in a schema of its own, so tests never see each other's leases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from loop.db.engine import make_engine

POSTGRES = os.environ.get("MENDLOOP_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="MENDLOOP_TEST_POSTGRES_URL not set")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A database URL whose tables live in a fresh schema (dropped afterwards)."""
    assert POSTGRES is not None
    schema = f"c_{uuid.uuid4().hex[:8]}"
    engine = make_engine(POSTGRES)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
