"""The loop under real SQL outages: a SQLite write lock held past the busy timeout, a full
disk under the database, PostgreSQL refusing connections. A fault that arrives during the
outage becomes an incident once the store is back, later faults are not ignored, an
incident walk that meets the outage is walked again (never escalated for it), /readyz
says what is failing meanwhile while ingest keeps answering, and one bad finding does not
stop the loop. The engine runs in shadow mode (it decides and records, runs nothing)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import app_for
from kernel.config import Settings
from kernel.models import Evidence, Finding, FindingKind
from kernel.state import State
from loop.daemon import Engine
from loop.db.engine import make_engine
from mendloop.service import build_engine

pytestmark = pytest.mark.neo4j
POSTGRES = os.environ.get("MENDLOOP_TEST_POSTGRES_URL")
BROKEN = {"cache_utilization_pct": 92.0, "cache_hit_ratio": 0.45, "db_penetration_pct": 12}


class Running:
    """A started engine on a background event loop, with its API (auth off)."""

    def __init__(self, settings: Settings, database_url: str | None = None) -> None:
        self.engine: Engine = build_engine(
            settings, progress=lambda _: None, database_url=database_url
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.engine.start(), self.loop).result(60)
        self.client = TestClient(app_for(self.engine))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.stop(), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.engine.close()

    def spawn(self, incident_id: str) -> None:
        self.engine.walk(incident_id)


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def fault(engine: Engine, target: str) -> None:
    """Five seconds of a saturated cache on ``target``: the cache rule fires."""
    now = int(time.time())
    for ts in range(now - 5, now):
        result = engine.submit(
            [
                {"series": s, "labels": {"target": target}, "ts": ts, "value": v}
                for s, v in BROKEN.items()
            ]
        )
        assert result.accepted == len(BROKEN), result


def settled(engine: Engine, target: str) -> list[Any]:
    """The target's incidents, once every one of them has ended."""
    incidents = engine.store.list(target=target)
    return incidents if incidents and all(i.terminal for i in incidents) else []


def shadowed(incidents: list[Any]) -> bool:
    """Escalated by shadow mode after a decision: the walk went through; an outage was
    never the reason."""
    return all(i.state == State.escalated and "shadow" in i.reason for i in incidents)


@pytest.fixture
def shadow_settings(make_settings) -> Settings:
    return make_settings(shadow="all", loop_retry_max_s=2.0)


def test_a_fault_during_a_sqlite_write_lock_becomes_an_incident(shadow_settings, graph) -> None:
    db = Path(shadow_settings.database_url.removeprefix("sqlite:///"))
    with Running(shadow_settings) as run:
        engine = run.engine
        waiting = engine.store.open_incident("lock-walk", [])  # its walk starts during the lock
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process's write lock, held past 5 s
        try:
            fault(engine, "lock-1")
            run.spawn(waiting)
            wait_for(lambda: engine.health.failures["sql"] >= 3, "the store failed, retried")
            ready = run.client.get("/readyz")
            assert ready.status_code == 503
            loop = ready.json()["checks"]["loop"]
            assert not loop["ok"] and "sql: failing for" in loop["detail"], loop
            assert "database is locked" in loop["detail"] and "1 finding(s) held" in loop["detail"]
            assert engine.loop_running()  # not dead: waiting for the store
            # ingest keeps answering, and what arrives now is held too
            now = int(time.time())
            for ts in range(now - 5, now):  # one push per second, as an exporter sends them
                pushed = run.client.post(
                    "/v1/samples",
                    json=[
                        {"series": s, "labels": {"target": "lock-2"}, "ts": ts, "value": v}
                        for s, v in BROKEN.items()
                    ],
                )
                assert pushed.status_code == 200 and pushed.json()["accepted"] == 3
            wait_for(lambda: len(engine.admission) == 2, "both faults held")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for target in ("lock-1", "lock-2"):
            assert shadowed(wait_for(lambda t=target: settled(engine, t), f"{target} handled"))
        walked = engine.store.get(waiting)
        assert walked.state == State.escalated and "no rule explains" in walked.reason
        assert engine.health.failures["incident walk"] >= 1  # it met the lock, and was retried
        wait_for(lambda: engine.loop_health()[0], "the loop says it works again")
        assert run.client.get("/readyz").status_code == 200
        fault(engine, "lock-3")  # a later fault is not ignored
        assert shadowed(wait_for(lambda: settled(engine, "lock-3"), "lock-3 handled"))
        metrics = run.client.get("/metrics").text
        assert 'mendloop_loop_failures_total{name="sql"}' in metrics
        assert 'mendloop_loop_findings_total{outcome="opened"} 3.0' in metrics
        assert 'mendloop_loop_failing{name="sql"}' not in metrics


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs for the database: filled, it is a real full disk (needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): no full disk to test with")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_a_fault_during_a_full_disk_becomes_an_incident(make_settings, graph, full_disk) -> None:
    settings = make_settings(shadow="all", loop_retry_max_s=2.0)
    with Running(settings, database_url=f"sqlite:///{full_disk / 'm.db'}") as run:
        engine = run.engine
        filler = fill(full_disk)
        fault(engine, "full-1")
        wait_for(lambda: engine.health.failures["sql"] >= 2, "the store failed, retried")
        ok, detail = engine.loop_health()
        assert not ok and "database or disk is full" in detail
        filler.unlink()
        assert shadowed(wait_for(lambda: settled(engine, "full-1"), "full-1 handled"))
        fault(engine, "full-2")
        assert shadowed(wait_for(lambda: settled(engine, "full-2"), "full-2 handled"))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own in the test database (PostgreSQL, real cluster)."""
    if not POSTGRES:
        pytest.skip("MENDLOOP_TEST_POSTGRES_URL not set")
    schema = f"t_{uuid.uuid4().hex[:8]}"
    owner = make_engine(POSTGRES)
    with owner.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}options=-csearch_path%3D{schema}"
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        owner.dispose()


def test_a_fault_while_postgresql_refuses_connections(shadow_settings, graph, pg_url) -> None:
    assert POSTGRES is not None
    database = POSTGRES.rsplit("/", 1)[1].split("?")[0]
    admin = make_engine(POSTGRES.rsplit("/", 1)[0] + "/postgres")  # outside the test database

    def allow(on: bool) -> None:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(on).lower()}'))
            if not on:  # and the engine's open connections go: a server that went away
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                )

    try:
        with Running(shadow_settings, database_url=pg_url) as run:
            engine = run.engine
            allow(False)
            try:
                fault(engine, "pg-1")
                wait_for(lambda: engine.health.failures["sql"] >= 2, "the store failed, retried")
                ok, detail = engine.loop_health()
                assert not ok and "sql: failing" in detail and "1 finding(s) held" in detail
            finally:
                allow(True)
            assert shadowed(wait_for(lambda: settled(engine, "pg-1"), "pg-1 handled"))
            fault(engine, "pg-2")
            assert shadowed(wait_for(lambda: settled(engine, "pg-2"), "pg-2 handled"))
    finally:
        allow(True)
        admin.dispose()


def test_a_fault_while_a_postgresql_table_lock_holds_the_loop(
    shadow_settings, graph, pg_url
) -> None:
    """A lock on PostgreSQL makes the loop wait rather than fail: /readyz says it waits."""
    with Running(shadow_settings, database_url=pg_url) as run:
        engine = run.engine
        locker = make_engine(pg_url)
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE incident IN ACCESS EXCLUSIVE MODE"))
            fault(engine, "pglock-1")
            detail = wait_for(
                lambda: "sql: a call has waited" in (d := engine.loop_health()[1]) and d,
                "the loop says it is waiting on SQL",
            )
            assert "1 finding(s) held" in detail
            assert run.client.get("/readyz").json()["checks"]["loop"]["ok"] is False
            conn.rollback()
        locker.dispose()
        assert shadowed(wait_for(lambda: settled(engine, "pglock-1"), "pglock-1 handled"))
        wait_for(lambda: engine.loop_health()[0], "the loop says it works again")


def test_one_bad_finding_does_not_stop_the_loop(shadow_settings, graph, caplog) -> None:
    """A finding whose rule was removed by a reload while it waited (one bad item) is
    counted and dropped; the good one beside it, and later ones, become incidents."""
    with Running(shadow_settings) as run:
        engine = run.engine
        orphan = Finding(
            kind=FindingKind.rule,
            target="bad-1",
            series=("cache_hit_ratio",),
            rule_id="removed-by-a-reload",
            started_at=time.time(),
            score=0.9,
            evidence=(
                Evidence(
                    series="cache_hit_ratio", value=0.1, threshold=0.5, direction="low", since=1.0
                ),
            ),
        )
        engine.hand_over([orphan])
        fault(engine, "bad-2")
        assert shadowed(wait_for(lambda: settled(engine, "bad-2"), "bad-2 handled"))
        assert engine.admission.counts["rule_gone"] == 1
        assert engine.store.list(target="bad-1") == []
        assert engine.loop_running()
        fault(engine, "bad-3")
        assert shadowed(wait_for(lambda: settled(engine, "bad-3"), "bad-3 handled"))


def test_gaps_on_many_targets_are_one_log_line_not_one_per_target(
    shadow_settings, graph, caplog
) -> None:
    with Running(shadow_settings) as run:
        engine = run.engine
        old = int(time.time()) - 200  # 50 targets that reported, then went quiet
        for i in range(50):
            engine.submit(
                [
                    {"series": s, "labels": {"target": f"quiet-{i}"}, "ts": ts, "value": v}
                    for ts in range(old, old + 5)
                    for s, v in {"cache_utilization_pct": 40.0, "cache_hit_ratio": 0.95}.items()
                ]
            )
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mendloop.daemon"):
            for _ in range(3):  # the watcher's sweeps (it sweeps too; each gap is seen once)
                engine.upkeep.sweep_once()
            quality = engine.upkeep.quality_log
            wait_for(lambda: sum(quality.total.values()) >= 50, "the gaps counted")
            engine.upkeep.sweep_once()
        warnings = [
            r for r in caplog.records if r.levelno >= logging.WARNING and "quiet-" in r.getMessage()
        ]
        details = [
            r for r in caplog.records if r.levelno == logging.DEBUG and "quiet-" in r.getMessage()
        ]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
        assert len(details) >= 50  # every gap still at debug
        assert "target(s)" in warnings[-1].getMessage()
        metrics = run.client.get("/metrics").text
        assert "mendloop_input_quality_findings_total{" in metrics
