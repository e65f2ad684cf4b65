"""The postgresql pack against a real PostgreSQL 15 of the test's own, through ansible-runner.

One server (the Debian package's binaries: initdb in a temp dir, started as the `postgres`
OS user with pg_ctl on a free loopback port, never the cluster on 5432) serves the module.
Its playbooks run through the real runner with the pack's and linux-host's playbook dirs,
the server described as a site inventory would: the server is stopped (immediate, a crash)
and started again after its identity is checked; idle sessions of an allow-listed user
are ended while another user's stay; a long transaction that blocks another session is
ended (its waiter then proceeds) while a blocker of a user not allowed is left alone.
Check mode changes nothing each time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kernel.models import RunStatus
from loop.runner import PlaybookRunner, RunDetail
from loop.solutions import SolutionSpec, check_file
from mendloop.labclient import issue_token, run_fault
from mendloop.labpacks.postgresql import (
    EXPORTER,
    PG_BIN,
    RUNUSER,
    PostgreSQL,
    PostgresScenario,
)
from mendloop.labsite import check
from mendloop.servicelab import Lab, free_port

PACKS = Path(__file__).resolve().parents[2] / "packs"
PACK = PACKS / "postgresql"

pytestmark = pytest.mark.skipif(
    not (PG_BIN / "pg_ctl").exists() or os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs PostgreSQL 15 binaries, root (to run the server as `postgres`) and runuser",
)

psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgreSQL]:
    # not under pytest's tmp dir: that is root's alone, and the server runs as `postgres`
    root = Path(tempfile.mkdtemp(prefix="mendloop-pg-"))
    root.chmod(0o755)
    server = PostgreSQL(root / "pg")
    server.init()
    server.start()
    try:
        server.sql("CREATE ROLE app LOGIN; CREATE ROLE other LOGIN;"
                   "CREATE TABLE accounts (id int PRIMARY KEY, balance int);"
                   "INSERT INTO accounts VALUES (1, 100), (2, 200);"
                   "GRANT ALL ON accounts TO app, other;")  # fmt: skip
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def library() -> dict[str, SolutionSpec]:
    specs, errors = check_file(PACK / "solutions" / "postgresql.yaml", PACK / "playbooks")
    assert errors == []
    return specs


class SiteRunner(PlaybookRunner):
    """The real runner over the site's packs, its localhost carrying the server's vars."""

    def __init__(self, work: Path, host_vars: dict[str, Any]) -> None:
        dirs = {name: PACKS / name / "playbooks" for name in ("linux-host", "postgresql")}
        super().__init__(dirs, work, timeout_s=180)
        self.host_vars = host_vars

    def _inventory(self) -> dict[str, Any]:
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        return {"all": {"hosts": {"localhost": {**local, **self.host_vars}}}}


def run(runner: SiteRunner, sid: str, check: bool, **params: object) -> RunDetail:
    spec = library()[sid]
    variables = spec.render_vars({}, {"postgres": "main", **params})
    return runner.run_detailed(spec.playbook, variables, check, pack="postgresql")


def messages(detail: RunDetail) -> str:
    return " ".join(str(e.get("msg", "")) for e in detail.events)


def backends(server: PostgreSQL, user: str) -> int:
    rows = server.sql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'")
    return int(rows[0][0])


def test_the_pack_library_validates() -> None:
    specs = library()
    assert set(specs) == {
        "sol-postgresql-restart",
        "sol-postgresql-terminate-idle",
        "sol-postgresql-terminate-blocker",
    }
    assert specs["sol-postgresql-terminate-blocker"].risk == "high"
    assert all(s.check_mode and s.no_rollback for s in specs.values())
    with pytest.raises(ValueError, match="does not match"):  # a name, never SQL or a path
        specs["sol-postgresql-terminate-idle"].render_vars({}, {"postgres": "main'; DROP"})


def test_a_crashed_server_is_started_again_after_its_identity_check(
    tmp_path: Path, postgres: PostgreSQL
) -> None:
    runner = SiteRunner(tmp_path / "runs", postgres.inventory())
    old = postgres.pid()

    dry = run(runner, "sol-postgresql-restart", check=True)
    assert dry.run.status == RunStatus.successful, (dry.run.failed_tasks, dry.events)
    assert f"would stop pid {old} and start" in messages(dry) and postgres.pid() == old

    postgres.crash()
    with pytest.raises(psycopg.OperationalError):
        postgres.sql("SELECT 1")
    real = run(runner, "sol-postgresql-restart", check=False)
    assert real.run.status == RunStatus.successful, (real.run.failed_tasks, real.events)
    assert postgres.pid() != old and postgres.sql("SELECT 1") == [(1,)]
    assert f"started {RUNUSER}" in messages(real)


def test_idle_sessions_of_the_allowed_application_end_others_stay(
    tmp_path: Path, postgres: PostgreSQL
) -> None:
    runner = SiteRunner(tmp_path / "runs", postgres.inventory())
    loader = [postgres.connect("app", "batch-loader") for _ in range(6)]
    web = [postgres.connect("app", "web") for _ in range(2)]  # same user, not allowed app
    others = [postgres.connect("other", "batch-loader") for _ in range(2)]
    try:
        dry = run(runner, "sol-postgresql-terminate-idle", check=True, idle_for_s=0)
        assert dry.run.status == RunStatus.successful, (dry.run.failed_tasks, dry.events)
        assert "would end 6 idle session(s)" in messages(dry)
        assert backends(postgres, "app") == 8

        real = run(runner, "sol-postgresql-terminate-idle", check=False, idle_for_s=0)
        assert real.run.status == RunStatus.successful, (real.run.failed_tasks, real.events)
        assert "ended 6 idle session(s)" in messages(real)
        assert backends(postgres, "app") == 2 and backends(postgres, "other") == 2
        for conn in web + others:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            loader[0].execute("SELECT 1")

        young = run(runner, "sol-postgresql-terminate-idle", check=False, idle_for_s=3600)
        assert young.run.status == RunStatus.failed  # idle, but not for an hour: no fix
        assert "ended 0 idle session(s)" in messages(young)
    finally:
        for conn in loader + web + others:
            conn.close()


def blocked_update(
    server: PostgreSQL, user: str, done: list[str], row: int = 1
) -> threading.Thread:
    """A session of ``user`` that updates ``row`` and waits for whoever holds it."""

    def update() -> None:
        with server.connect(user, "waiter") as conn:
            conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (row,))
            done.append("updated")

    thread = threading.Thread(target=update, daemon=True)
    thread.start()
    return thread


def wait_for_lock_wait(server: PostgreSQL) -> None:
    for _ in range(200):
        if server.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0]:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the waiter never waited for the lock")


def test_a_blocking_transaction_of_an_allowed_user_is_ended(
    tmp_path: Path, postgres: PostgreSQL
) -> None:
    runner = SiteRunner(tmp_path / "runs", postgres.inventory())
    for user, allowed in (("other", False), ("app", True)):
        blocker = postgres.connect(user, "migration")
        blocker.execute("BEGIN")
        blocker.execute("UPDATE accounts SET balance = 0 WHERE id = 1")
        done: list[str] = []
        waiter = blocked_update(postgres, "postgres", done)
        wait_for_lock_wait(postgres)

        dry = run(runner, "sol-postgresql-terminate-blocker", check=True, min_age_s=0)
        real = run(runner, "sol-postgresql-terminate-blocker", check=False, min_age_s=0)
        if not allowed:
            assert dry.run.status == real.run.status == RunStatus.failed
            assert "no allow-listed blocking session" in messages(real)
            assert done == [] and waiter.is_alive()
            blocker.execute("ROLLBACK")  # the test ends it itself
        else:
            assert dry.run.status == RunStatus.successful, (dry.run.failed_tasks, dry.events)
            assert "would end 1 blocking session(s)" in messages(dry)
            assert real.run.status == RunStatus.successful, (real.run.failed_tasks, real.events)
            assert "ended 1 blocking session(s)" in messages(real)
            with pytest.raises(psycopg.OperationalError):
                blocker.execute("SELECT 1")
        waiter.join(timeout=60)
        assert done == ["updated"]
        blocker.close()
    assert postgres.sql("SELECT balance FROM accounts WHERE id = 1") == [(102,)]


# --- end to end: exporter -> Prometheus (and Alertmanager) -> the daemon on a site ---------
# The lab scenario (mendloop/labpacks/postgresql.py) on this module's server: the same faults
# `mendloop eval packs` measures.


@dataclass
class PostgresLab:
    scenario: PostgresScenario
    daemon: Any

    @property
    def server(self) -> PostgreSQL:
        return self.scenario.server

    def fault(self, name: str) -> Any:
        return next(f for f in self.scenario.faults if f.name == name)


@pytest.fixture(scope="module")
def pg_lab(postgres: PostgreSQL, neo4j_settings: Any) -> Iterator[PostgresLab]:
    """One exporter, Prometheus (alert rule -> Alertmanager -> the daemon's webhook) and
    daemon on a site including the pack, for every fault below in turn."""
    if not Path(EXPORTER).exists():
        pytest.skip("needs prometheus-postgres-exporter")
    root = postgres.root.parent / "lab"
    with Lab(root) as lab:
        lab.adopt_pidfile(postgres.pidfile, str(PG_BIN / "postgres"))  # whoever started it
        scenario = PostgresScenario(lab, server=postgres)
        site = scenario.site(root / "site")
        assert check(site) == []
        # ports form a cycle (Prometheus -> Alertmanager -> the daemon -> Prometheus): the
        # daemon's port and a token of its database are chosen before Alertmanager starts
        api_port = free_port()
        (root / "mendloop").mkdir()
        hook_token = issue_token(f"sqlite:///{root / 'mendloop' / 'mendloop.db'}")
        manager = lab.alertmanager(
            f"http://127.0.0.1:{api_port}/v1/alerts/alertmanager", token=hook_token
        )
        prom = lab.prometheus(
            scenario.scrape,
            labels=scenario.labels,
            interval=scenario.interval,
            alertmanager=manager.url,
            rule_files=scenario.rule_files(),
        )
        daemon = lab.daemon(
            site, neo4j_settings.neo4j_environ(), prometheus_url=prom.url, port=api_port
        )
        try:
            yield PostgresLab(scenario, daemon)
        finally:
            daemon.close()


def explain(daemon: Any, outcome: Any) -> str:
    """What a failed fault run needs to be understood: the reason and the checks."""
    incident = daemon.store.get(outcome.incident_id)
    return f"{outcome.reason}\n{incident.verification if incident else None}\n{outcome}"


@pytest.mark.e2e
@pytest.mark.neo4j
def test_connections_exhausted_by_idle_sessions_are_freed(pg_lab: PostgresLab) -> None:
    fault = pg_lab.fault("connections_exhausted")
    try:
        outcome = run_fault(pg_lab.daemon, PostgresScenario.target, inject=fault.inject)
        assert len(pg_lab.scenario.leaked) >= 12  # the server refused the loader the rest
        assert outcome.fault == fault.expected, outcome
        assert outcome.solution == "sol-postgresql-terminate-idle" and not outcome.approved
        assert (outcome.state, outcome.verification) == ("resolved", "passed"), explain(
            pg_lab.daemon, outcome
        )
        assert fault.healthy()  # every leaked session ended, by the playbook
    finally:
        fault.reset()


@pytest.mark.e2e
@pytest.mark.neo4j
def test_a_blocking_transaction_is_ended_after_an_approval(pg_lab: PostgresLab) -> None:
    daemon, scenario = pg_lab.daemon, pg_lab.scenario
    fault = pg_lab.fault("blocking_query")
    seen: list[str] = []

    def waiting(incident: Any) -> None:  # risk high: it must wait for the person
        settled = daemon.wait_settled(incident.id, 300)
        seen.append(settled.state.value)
        assert scenario.done == []  # nothing ended before the approval

    try:
        outcome = run_fault(daemon, PostgresScenario.target, inject=fault.inject, during=waiting)
        assert seen == ["awaiting_approval"]
        assert outcome.fault == fault.expected, outcome
        assert outcome.solution == "sol-postgresql-terminate-blocker" and outcome.approved
        assert (outcome.state, outcome.verification) == ("resolved", "passed"), explain(
            daemon, outcome
        )
        with pytest.raises(psycopg.OperationalError):
            scenario.blocker.execute("SELECT 1")
        assert fault.healthy()  # the waiter's update went through
    finally:
        fault.reset()


@pytest.mark.e2e
@pytest.mark.neo4j
def test_a_crashed_server_is_restarted_and_the_alert_resolves(pg_lab: PostgresLab) -> None:
    server, daemon = pg_lab.server, pg_lab.daemon
    fault = pg_lab.fault("postgresql_down")
    old = server.pid()
    outcome = run_fault(daemon, PostgresScenario.target, inject=fault.inject)
    assert outcome.fault == fault.expected, outcome
    assert outcome.solution == "sol-postgresql-restart" and not outcome.approved
    assert (outcome.state, outcome.verification) == ("resolved", "passed"), explain(daemon, outcome)
    assert server.pid() != old and fault.healthy()
    alerts = daemon.get("/v1/intake/alertmanager")  # the alert fired and resolved through AM
    counters = alerts.get("counters", alerts)
    assert counters["firing_new"] >= 1 and counters["resolved"] >= 1, alerts
