"""The Alertmanager intake's state in SQL (loop/alertstate.py under loop/alertmanager.py), on a
real SQLite file and a real PostgreSQL (the ``store`` fixture of tests/loop/conftest.py):
a restart (a new intake on a new engine over the same database) loses no firing alert, no
resolution taken and no unmapped alert; the state stays bounded; a store outage is a 503
that takes nothing, so Alertmanager's retry is taken whole once the store is back. The
intake hands its points to a real Monitor on the redis pack's catalog and alert map."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from api.alertmanager import alertmanager_router
from kernel.config import PACKS_DIR
from kernel.errors import RuleFileError
from loop.alertmanager import AlertIntake, AmWebhook
from loop.alertstate import AlertState
from loop.db.engine import make_engine
from loop.db.schema import AlertResolvedRecord
from loop.monitor import Monitor
from rules.alerts import load_alert_map
from rules.catalog import load_catalog

REDIS = PACKS_DIR / "redis"
CATALOG = load_catalog(REDIS / "metrics.yaml")
ALERTS = load_alert_map(REDIS / "alerts.yaml", CATALOG)
T0 = "2026-12-06T10:00:00Z"
POSTGRES = os.environ.get("MENDLOOP_TEST_POSTGRES_URL")


def alert(fp: str, status: str = "firing", starts: str = T0, **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "RedisDown", "target": "redis-1"} | labels,
        "startsAt": starts,
        "fingerprint": fp,
    }


def webhook(*alerts: dict[str, Any]) -> AmWebhook:
    return AmWebhook.model_validate(
        {
            "version": "4",
            "groupKey": "{}:{}",
            "status": "firing",
            "receiver": "mendloop",
            "alerts": list(alerts),
        }
    )


@dataclass
class Daemon:
    """What a daemon process holds: its engine on the database, the intake, the monitor."""

    url: str
    clock: list[float] = field(default_factory=lambda: [1_800_000_000.0])
    batches: list[list[dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sql: Engine = make_engine(self.url)
        self.monitor = Monitor(CATALOG, window_s=600, clock=lambda: self.clock[0])
        self.intake = AlertIntake(ALERTS, self.submit, AlertState(self.sql), clock=self.now)

    def now(self) -> float:
        self.clock[0] += 1.0  # each notification one second after the last
        return self.clock[0]

    def submit(self, batch: list[dict[str, Any]], *, owner: str | None = None) -> Any:
        self.batches.append(batch)
        return self.monitor.ingest(batch, owner=owner)

    def level(self, target: str, series: str = "alert_redis_down") -> float | None:
        latest = self.monitor.latest(target, series)
        return None if latest is None else latest[1]

    def close(self) -> None:
        self.sql.dispose()


@pytest.fixture
def url(store) -> Iterator[str]:
    """The database of the ``store`` fixture (SQLite file or a PostgreSQL schema), by URL:
    each Daemon makes its own engine on it, as a restarted process does."""
    yield store.engine.url.render_as_string(hide_password=False)


def test_a_restart_loses_no_firing_alert_resolution_or_unmapped_alert(url: str) -> None:
    first = Daemon(url)
    first.intake.receive(
        webhook(alert("a1"), alert("a2", target="redis-2"), alert("bad1", alertname="DiskFull"))
    )
    assert first.level("redis-1") == 1.0 and first.level("redis-2") == 1.0
    first.intake.receive(webhook(alert("a2", "resolved", target="redis-2")))
    first.close()

    again = Daemon(url, clock=first.clock)  # a new process on the same database
    assert again.intake.firing() == {"redis-1": ["alert_redis_down"]}
    assert [u.fingerprint for u in again.intake.unmapped()] == ["bad1"]
    repeat = again.intake.receive(webhook(alert("a1"), alert("a2", "resolved", target="redis-2")))
    assert repeat.counts["firing_duplicate"] == 1 and repeat.counts["resolved_duplicate"] == 1
    assert repeat.points == 0 and again.batches == []  # nothing moved: nothing sent
    ended = again.intake.receive(webhook(alert("a1", "resolved")))
    assert ended.counts == {"notifications": 1, "alerts": 1, "resolved": 1}  # not before_firing
    assert again.level("redis-1") == 0.0 and again.intake.firing() == {}
    again.close()


def test_the_same_instant_in_another_offset_is_the_same_episode(url: str) -> None:
    daemon = Daemon(url)
    daemon.intake.receive(webhook(alert("b1", starts="2026-12-06T11:00:00.123456+01:00")))
    daemon.close()
    daemon = Daemon(url, clock=daemon.clock)
    same = daemon.intake.receive(webhook(alert("b1", starts="2026-12-06T10:00:00.123456Z")))
    assert same.counts.get("firing_duplicate") == 1
    daemon.intake.receive(webhook(alert("b1", "resolved", starts="2026-12-06T10:00:00.123456Z")))
    twice = daemon.intake.receive(
        webhook(alert("b1", "resolved", starts="2026-12-06T05:00:00.123456-05:00"))
    )
    assert twice.counts.get("resolved_duplicate") == 1
    daemon.close()


def test_a_new_episode_of_a_fingerprint_replaces_the_old_across_a_restart(url: str) -> None:
    daemon = Daemon(url)
    daemon.intake.receive(webhook(alert("c1")))
    daemon.close()
    daemon = Daemon(url, clock=daemon.clock)
    refired = daemon.intake.receive(webhook(alert("c1", starts="2026-12-06T12:00:00Z")))
    assert refired.counts["firing_new"] == 1 and daemon.level("redis-1") == 1.0
    daemon.intake.receive(webhook(alert("c1", "resolved", starts="2026-12-06T12:00:00Z")))
    assert daemon.intake.firing() == {} and daemon.level("redis-1") == 0.0
    daemon.close()


def test_the_state_is_bounded(url: str) -> None:
    daemon = Daemon(url)
    state = AlertState(daemon.sql, remembered=2, resolved_for_s=10.0, kept_unmapped=3)
    intake = AlertIntake(ALERTS, daemon.submit, state, clock=daemon.now)
    intake.receive(webhook(*(alert(f"d{i}", target=f"r{i}") for i in range(3))))
    assert sorted(intake.firing()) == ["r1", "r2"]  # the oldest let go past 2: counted
    assert intake.counters()["forgotten_firing"] == 1 and daemon.level("r0") == 0.0
    intake.receive(webhook(*(alert(f"e{i}", alertname="Nope") for i in range(5))))
    assert [u.fingerprint for u in intake.unmapped()] == ["e4", "e3", "e2"]
    intake.receive(webhook(alert("d1", "resolved", target="r1")))
    daemon.clock[0] += 60.0  # past resolved_for_s: the next resolution prunes it
    intake.receive(webhook(alert("d2", "resolved", target="r2")))
    with daemon.sql.connect() as conn:
        kept = conn.execute(select(AlertResolvedRecord.fingerprint)).scalars().all()
    assert kept == ["d2"]
    intake.receive(webhook(alert("f1", target="r5"), alert("f2", target="r6")))
    intake.receive(
        webhook(alert("f1", "resolved", target="r5"), alert("f2", "resolved", target="r6"))
    )
    with daemon.sql.connect() as conn:
        count = conn.execute(select(func.count()).select_from(AlertResolvedRecord)).scalar()
    assert count is not None and count <= 2
    daemon.close()


# --- the store down: a 503, nothing taken, the retry taken whole ---------------------------


def _sqlite_locked(url: str) -> Any:
    """Another process's write lock on the SQLite file, held past the busy timeout."""
    lock = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    return lock


def _postgres_refusing(url: str) -> Any:
    """The test database refusing connections, its open ones terminated."""
    assert POSTGRES is not None
    database = POSTGRES.rsplit("/", 1)[1].split("?")[0]
    admin = make_engine(POSTGRES.rsplit("/", 1)[0] + "/postgres")

    def allow(on: bool) -> None:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(on).lower()}'))
            if not on:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                )

    allow(False)
    return allow, admin


def test_a_store_outage_is_a_503_that_takes_nothing_and_the_retry_is_taken(url: str) -> None:
    daemon = Daemon(url)
    app = FastAPI()
    app.include_router(alertmanager_router(daemon.intake))
    client = TestClient(app)
    body = webhook(alert("1a"), alert("2b", alertname="Nope")).model_dump(
        by_alias=True, mode="json"
    )
    sqlite = url.startswith("sqlite")
    outage = _sqlite_locked(url) if sqlite else _postgres_refusing(url)
    try:
        refused = client.post("/v1/alerts/alertmanager", json=body)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "nothing was taken" in refused.json()["detail"]
        if not sqlite:  # SQLite in WAL mode still reads under a write lock
            assert client.get("/v1/intake/alertmanager").status_code == 503
    finally:
        if sqlite:
            outage.execute("ROLLBACK")
            outage.close()
        else:
            allow, admin = outage
            allow(True)
            admin.dispose()
    assert daemon.batches == [] and daemon.level("redis-1") is None  # nothing went on
    counters = daemon.intake.counters()
    assert counters["store_unavailable"] == 1 and "firing_new" not in counters
    retried = client.post("/v1/alerts/alertmanager", json=body)  # Alertmanager sends it again
    assert retried.status_code == 200, retried.text
    assert retried.json()["counts"]["firing_new"] == 1  # taken, not a duplicate
    assert retried.json()["counts"]["unmapped_unknown_alert"] == 1
    assert daemon.level("redis-1") == 1.0
    assert [u["fingerprint"] for u in client.get("/v1/alerts/unmapped").json()] == ["2b"]
    daemon.close()


def test_a_catalog_series_name_fits_the_state_s_column(tmp_path) -> None:
    """alert_firing.series is 200 characters (as targets): the catalog refuses longer names
    when it loads, so no alert series can fail its insert on PostgreSQL."""
    entry = (REDIS / "metrics.yaml").read_text()
    fits, too_long = "a" * 200, "a" * 201
    for name, ok in ((fits, True), (too_long, False)):
        path = tmp_path / f"{len(name)}.yaml"
        path.write_text(entry.replace("name: alert_redis_down", f"name: {name}", 1))
        if ok:
            assert name in load_catalog(path)
        else:
            with pytest.raises(RuleFileError, match="at most 200 characters"):
                load_catalog(path)
