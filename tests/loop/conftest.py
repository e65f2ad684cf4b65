"""The SQL store on a real database for tests/loop: SQLite always, and PostgreSQL when
MENDLOOP_TEST_POSTGRES_URL names one (`./dev test` starts one as root)."""

import os
import uuid

import pytest
from sqlalchemy import text

from loop.db.engine import make_engine
from loop.store import IncidentStore

POSTGRES = os.environ.get("MENDLOOP_TEST_POSTGRES_URL")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not POSTGRES, reason="MENDLOOP_TEST_POSTGRES_URL not set"),
        ),
    ]
)
def store(request, tmp_path):
    if request.param == "sqlite":
        store = IncidentStore(f"sqlite:///{tmp_path / 'sub' / 'm.db'}")  # creates sub/
        yield store
        store.close()
        return
    schema = f"t_{uuid.uuid4().hex[:8]}"  # a schema per test: tests never see each other
    engine = make_engine(POSTGRES)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    store = IncidentStore(
        f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}options=-csearch_path%3D{schema}"
    )
    yield store
    store.close()
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
