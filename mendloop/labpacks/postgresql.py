"""The postgresql pack's lab scenario: a PostgreSQL 15 of its own (the Debian binaries,
initdb in a temp dir, run as the `postgres` OS user with pg_ctl on a free loopback port,
never the cluster on 5432) and prometheus-postgres-exporter with the pack's lock-wait
query, and three faults:

- ``connections_exhausted``: an application opens idle sessions until the server refuses
  it (17 of 20 slots; the rest are reserved for superusers);
- ``blocking_query``: a transaction holds a row lock another session waits for (the fix is
  risk high: it waits for an approval);
- ``postgresql_down``: an immediate shutdown (a crash); the fix is the identity-checked
  start of the inventory's pg_ctl through linux-host's mendloop_process.

The server's folder is not under the lab's (which may be private to root, and the server
runs as `postgres`): it is removed when the lab closes. Scrape every 2 s (``interval``): a
scrape while the server is down takes the exporter ~1 s, and a timed-out scrape would lose
the pg_up 0 that tells it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

from kernel.config import PACKS_DIR
from mendloop.labpacks import Fault
from mendloop.labsite import write_site
from mendloop.servicelab import Lab, LabError, free_port, need

PG_BIN = Path(os.environ.get("MENDLOOP_PG_BIN", "/usr/lib/postgresql/15/bin"))
EXPORTER = os.environ.get("MENDLOOP_PG_EXPORTER_BIN", "/usr/bin/prometheus-postgres-exporter")
RUNUSER = "/usr/sbin/runuser"
PACK_DIR = PACKS_DIR / "postgresql"
MAX_CONNECTIONS = 20
# a site tunes the pack: a transaction counts as long after 8 s here, not 2 minutes
LONG_TX = {"warn": 4, "crit": 8}


class PostgreSQL:
    """A throw-away server: data dir, socket dir and pid file in one folder of `postgres`."""

    def __init__(self, root: Path, max_connections: int = MAX_CONNECTIONS) -> None:
        self.root = root
        self.port = free_port()
        self.data = root / "data"
        self.pidfile = root / "postgresql.pid"  # external_pid_file: the pid alone
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {root} "
            f"-c max_connections={max_connections} -c external_pid_file={self.pidfile}"
        )
        self.start_argv = [
            RUNUSER, "-u", "postgres", "--",
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        ]  # fmt: skip

    def process_spec(self) -> dict[str, Any]:
        """linux-host's mendloop_processes entry: the postmaster of this data dir only."""
        return {
            "pidfile": str(self.pidfile),
            "executable": str(PG_BIN / "postgres"),
            "cmdline": "^" + re.escape(f"{PG_BIN}/postgres -D {self.data}") + "( |$)",
            "start": self.start_argv,
            "chdir": str(self.root),
            "log": str(self.root / "start.log"),
            "daemonizes": True,
        }

    def as_postgres(self, *argv: str, check: bool = True) -> None:
        subprocess.run([RUNUSER, "-u", "postgres", "--", *argv], check=check,
                       capture_output=True, timeout=120, cwd=self.root)  # fmt: skip

    def init(self) -> None:
        self.root.mkdir(parents=True)
        shutil.chown(self.root, "postgres", "postgres")
        self.as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                         "-U", "postgres", "--no-sync")  # fmt: skip

    def start(self) -> None:
        subprocess.run(self.start_argv, check=True, capture_output=True, timeout=120,
                       cwd=self.root)  # fmt: skip

    def crash(self) -> None:
        self.as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def stop(self) -> None:
        self.as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                         "stop", check=False)  # fmt: skip

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def connect(self, user: str = "postgres", application: str = "") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=user, dbname="postgres",
            application_name=application, autocommit=True, connect_timeout=10,
        )  # fmt: skip

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def answers(self) -> bool:
        try:
            return self.sql("SELECT 1") == [(1,)]
        except Exception:  # psycopg.OperationalError: down or starting
            return False

    def inventory(self) -> dict[str, Any]:
        """The host vars a site's inventory gives this server."""
        return {
            "mendloop_processes": {"postgresql": self.process_spec()},
            "mendloop_postgres": {
                "main": {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "user": "postgres",
                    "dbname": "postgres",
                    "process": "postgresql",
                    "terminate_idle": [{"user": "app", "application": "batch-loader"}],
                    "terminate_blocking": [{"user": "app"}],
                }
            },
        }


def new_server(lab: Lab) -> PostgreSQL:
    """Initialised and started, with the roles and the table the faults use; stopped and
    removed when the lab closes."""
    if os.geteuid() != 0 or not Path(RUNUSER).exists():
        raise LabError("the PostgreSQL scenario runs the server as `postgres`: needs root")
    need(str(PG_BIN / "pg_ctl"), "postgresql-15")
    root = Path(tempfile.mkdtemp(prefix="mendloop-pg-"))
    root.chmod(0o755)
    server = PostgreSQL(root / "pg")

    def remove() -> None:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    lab.on_close(remove)
    server.init()
    server.start()
    server.sql(
        "CREATE ROLE app LOGIN; CREATE ROLE other LOGIN;"
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);"
        "INSERT INTO accounts VALUES (1, 100), (2, 200);"
        "GRANT ALL ON accounts TO app, other;"
    )
    return server


class PostgresScenario:
    """PostgreSQL + prometheus-postgres-exporter under ``lab``, for the target ``pg-1``."""

    pack = "postgresql"
    target = "pg-1"
    interval = "2s"

    def __init__(self, lab: Lab, server: PostgreSQL | None = None) -> None:
        self.lab = lab
        self.server = server or new_server(lab)
        port = free_port()
        dsn = f"postgresql://postgres@127.0.0.1:{self.server.port}/postgres?sslmode=disable"
        exporter = lab.spawn(
            "postgres-exporter",
            [need(EXPORTER, "prometheus-postgres-exporter"),
             f"--web.listen-address=127.0.0.1:{port}",
             f"--extend.query-path={PACK_DIR / 'exporter' / 'queries.yaml'}"],
            env={"DATA_SOURCE_NAME": dsn},
        )  # fmt: skip
        lab.wait_http(f"http://127.0.0.1:{port}/metrics", exporter)
        self.scrape = {"postgresql": [f"127.0.0.1:{port}"]}
        self.labels = {"postgresql": {"instance": self.target}}
        self.leaked: list[Any] = []
        self.blocker: Any = None
        self.waiter: threading.Thread | None = None
        self.faults = [
            Fault("connections_exhausted", "postgresql_connections_exhausted",
                  self.leak, self.connections_ok, self.reset),
            Fault("blocking_query", "postgresql_blocking_query",
                  self.block, self.unblocked, self.reset),
            Fault("postgresql_down", "postgresql_down",
                  self.server.crash, self.server.answers, self.reset),
        ]  # fmt: skip

    # -- the site --------------------------------------------------------------------

    def site(self, folder: Path) -> Path:
        """A site including the pack, the server in its inventory, the test's tuning."""
        site = write_site(
            folder,
            "postgresql-lab",
            include=[self.pack],
            targets={self.target: {"components": ["postgresql"], "device_type": "postgresql",
                                   "hosts": [self.target]}},
            hosts={self.target: self.server.inventory()},
            defaults={"idle_for_s": 5, "min_age_s": 5},
        )  # fmt: skip
        pack = yaml.safe_load((PACK_DIR / "metrics.yaml").read_text())["metrics"]
        entry = next(m for m in pack if m["name"] == "postgresql_longest_transaction_seconds")
        tuned = {**entry, **LONG_TX, "override": True}
        (site / "metrics.yaml").write_text(yaml.safe_dump({"metrics": [tuned]}, sort_keys=False))
        return site

    def rule_files(self) -> list[Path]:
        """The pack's rules with shorter `for:` (a site's tuning): down at once; sessions
        and a lock wait after 10 s, so what the fix may end is older than the site's
        idle_for_s / min_age_s (5 s) when it runs."""
        rules = yaml.safe_load((PACK_DIR / "prometheus" / "postgresql.rules.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["for"] = "0s" if rule["alert"] == "PostgresqlDown" else "10s"
        dest = self.lab.root / "postgresql.rules.yml"
        dest.write_text(yaml.safe_dump(rules, sort_keys=False))
        return [dest]

    # -- faults ----------------------------------------------------------------------

    def leak(self) -> None:
        """The loader takes every slot it can get (17 of 20 are not reserved)."""
        import psycopg

        for _ in range(MAX_CONNECTIONS):
            try:
                self.leaked.append(self.server.connect("app", "batch-loader"))
            except psycopg.OperationalError as exc:
                if "reserved for" not in str(exc):
                    raise
                return

    def sessions(self, user: str) -> int:
        rows = self.server.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,))
        return int(rows[0][0])

    def connections_ok(self) -> bool:
        return self.server.answers() and self.sessions("app") == 0

    def block(self) -> None:
        """`app` holds row 2 in an open transaction; a `postgres` session waits for it."""
        self.blocker = self.server.connect("app", "migration")
        self.blocker.execute("BEGIN")
        self.blocker.execute("UPDATE accounts SET balance = balance - 50 WHERE id = 2")
        self.done: list[str] = []

        def update() -> None:
            with self.server.connect("postgres", "waiter") as conn:
                conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 2")
                self.done.append("updated")

        self.waiter = threading.Thread(target=update, daemon=True)
        self.waiter.start()

    def unblocked(self) -> bool:
        if self.waiter is not None:
            self.waiter.join(timeout=30)
        return self.server.answers() and getattr(self, "done", []) == ["updated"]

    def reset(self) -> None:
        """The leaked sessions and the blocker closed, the server answering."""
        for conn in [*self.leaked, *([self.blocker] if self.blocker is not None else [])]:
            conn.close()
        self.leaked.clear()
        self.blocker = None
        if self.waiter is not None:
            self.waiter.join(timeout=30)
            self.waiter = None
        if not self.server.answers():
            raise LabError(f"PostgreSQL on port {self.server.port} does not answer")
