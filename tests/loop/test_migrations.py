"""The schema by Alembic (loop/db/migrate.py): new databases, and databases made by the code
before Alembic, which are adopted (completed, stamped at the baseline, upgraded), never
dropped. The old databases are built from the DDL that code emitted (tests/loop/legacy/,
captured from main at 098eeb9 with SQLAlchemy's CreateTable on its metadata), with rows in
them, on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from kernel.state import State
from loop.db.engine import make_engine
from loop.db.migrate import BASELINE_REVISION, current_revision, head_revision
from loop.db.schema import metadata
from loop.ledger import Ledger
from loop.store import IncidentStore

LEGACY = Path(__file__).with_name("legacy")
POSTGRES = os.environ.get("MENDLOOP_TEST_POSTGRES_URL")
PAYLOADS = json.loads((LEGACY / "payloads.json").read_text())
OPENED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def statements(dialect: str, *, oldest: bool = False) -> list[str]:
    """The old code's DDL. ``oldest``: only the first two tables, and the incident table
    without the two columns that code added later by ALTER TABLE."""
    ddl = (LEGACY / f"schema_{dialect}.sql").read_text()
    parts = [p.strip() for p in ddl.split(";") if p.strip()]
    if oldest:
        parts = [p for p in parts if re.search(r"\b(incident|incident_transition)\b \(", p)]
        parts = [re.sub(r"\n\s*(plan|approval) JSON,", "", p) for p in parts]
    return parts


def legacy_rows(conn, *, oldest: bool = False) -> None:
    """An incident waiting with its approval plan, its transitions, a keyed run and (not
    in the oldest schema) a token, as the old code wrote them."""
    incident = {
        "id": "legacy000001",
        "target": "pm-site-1",
        "state": "approved",
        "fault": "cache_saturation",
        "reason": "",
        "opened_at": OPENED,
        "updated_at": OPENED,
        "findings": "[]",
        "decision": json.dumps(PAYLOADS["decision"]),
    }
    if not oldest:
        incident |= {
            "plan": json.dumps(PAYLOADS["plan"]),
            "approval": json.dumps(PAYLOADS["approval"]),
        }
    names = ", ".join(incident)
    conn.execute(
        text(f"INSERT INTO incident ({names}) VALUES ({', '.join(':' + n for n in incident)})"),
        incident,
    )
    for from_state, to_state in ((None, "open"), ("open", "analyzed"), ("analyzed", "decided")):
        conn.execute(
            text(
                "INSERT INTO incident_transition (incident_id, from_state, to_state, at, note) "
                "VALUES ('legacy000001', :f, :t, :at, 'old')"
            ),
            {"f": from_state, "t": to_state, "at": OPENED},
        )
    if oldest:
        return
    conn.execute(
        text(
            "INSERT INTO execution_run (key, incident_id, phase, playbook, status, changed, "
            "started_at, note) VALUES ('legacy000001/sol-cache-scale-out/plan', "
            "'legacy000001', 'plan', 'cache_scale_out.yml', 'successful', 1, :at, '')"
        ),
        {"at": OPENED},
    )
    conn.execute(
        text(
            "INSERT INTO api_token (id, name, role, secret_sha256, created_by, created_at) "
            "VALUES ('tok1', 'alice', 'approver', :sha, 'cli', :at)"
        ),
        {"sha": "0" * 64, "at": OPENED},
    )


def assert_adopted(store: IncidentStore, *, oldest: bool = False) -> None:
    assert current_revision(store.engine) == head_revision() != BASELINE_REVISION
    assert set(metadata.tables) <= set(inspect(store.engine).get_table_names())
    columns = {c["name"] for c in inspect(store.engine).get_columns("incident")}
    assert {"plan", "approval", "remediation"} <= columns  # by hand, then by Alembic
    incident = store.get("legacy000001")
    assert incident is not None and incident.state == State.approved
    assert incident.decision is not None
    assert incident.decision.solution_id == "sol-cache-scale-out"
    assert [t.to_state for t in incident.timeline] == ["open", "analyzed", "decided"]
    if oldest:
        assert incident.plan is None and incident.approval is None
        return
    assert incident.plan is not None and incident.approval is not None
    assert incident.plan.plan_hash == PAYLOADS["plan"]["plan_hash"]  # the hash still binds
    assert incident.approval.plan_hash == incident.plan.plan_hash
    run = Ledger(store.engine).run("legacy000001/sol-cache-scale-out/plan")
    assert run is not None and run.changed == 1
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM api_token")).scalar_one() == "alice"


def test_a_new_database_is_made_at_head(tmp_path: Path) -> None:
    store = IncidentStore(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert current_revision(store.engine) == head_revision()
        assert set(metadata.tables) <= set(inspect(store.engine).get_table_names())
        store.transition(store.open_incident("pm-site-1", []), State.analyzed, "works")
    finally:
        store.close()


@pytest.mark.parametrize("oldest", [False, True], ids=["main-before-alembic", "first-schema"])
def test_a_sqlite_file_of_the_old_code_is_adopted_not_dropped(tmp_path: Path, oldest) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # the old code's DDL, run by SQLite itself
        for statement in statements("sqlite", oldest=oldest):
            raw.execute(statement)
    old = make_engine(f"sqlite:///{path}")
    with old.begin() as conn:
        legacy_rows(conn, oldest=oldest)
    old.dispose()
    store = IncidentStore(f"sqlite:///{path}")
    try:
        assert_adopted(store, oldest=oldest)
    finally:
        store.close()
    again = IncidentStore(f"sqlite:///{path}")  # a second start: nothing left to do
    try:
        assert_adopted(again, oldest=oldest)
    finally:
        again.close()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    if not POSTGRES:
        pytest.skip("MENDLOOP_TEST_POSTGRES_URL not set")
    schema = f"m_{uuid.uuid4().hex[:8]}"
    admin = make_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.mark.parametrize("oldest", [False, True], ids=["main-before-alembic", "first-schema"])
def test_a_postgresql_database_of_the_old_code_is_adopted_not_dropped(
    postgres_schema: str, oldest
) -> None:
    old = make_engine(postgres_schema)
    with old.begin() as conn:
        for statement in statements("postgresql", oldest=oldest):
            conn.execute(text(statement))
        legacy_rows(conn, oldest=oldest)
    old.dispose()
    store = IncidentStore(postgres_schema)
    try:
        assert_adopted(store, oldest=oldest)
    finally:
        store.close()


def test_workers_starting_together_on_one_sqlite_file_migrate_once(tmp_path: Path) -> None:
    """Three processes open a new database file at the same moment: each ends at head."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = (
        "import sys; from loop.store import IncidentStore; "
        "IncidentStore(sys.argv[1]).close(); print('ok')"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=120)[0].strip() for worker in workers]
    assert outputs == ["ok"] * 3 and [w.returncode for w in workers] == [0] * 3
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
