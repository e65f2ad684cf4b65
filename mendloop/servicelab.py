"""The service lab: real Debian services, their exporters, Prometheus, Alertmanager and the
mendloop daemon on free loopback ports in one folder, for the packs' end-to-end tests and
`mendloop eval packs` (the same code measures what the tests assert).

    with Lab(tmp) as lab:
        redis = lab.spawn("redis", ["/usr/bin/redis-server", "--port", str(port), ...])
        lab.wait_port(port, redis)
        prom = lab.prometheus({"redis": [exporter_addr]}, interval="1s")
        site = write_site(tmp / "site", include=["redis"], targets={...}, hosts={...})
        daemon = lab.daemon(site, neo4j, prometheus_url=prom.url)
        outcome = run_fault(daemon, "redis-1", inject=lambda: redis.kill())

Everything runs as a child process with its own log file under the lab folder; a start
that does not become ready raises LabError with the log's tail; leaving the ``with``
stops every process (newest first) and every adopted pid file's process. No systemd:
what a playbook restarts is described by the site's inventory (linux-host's
``mendloop_processes``), and the lab only cleans up after it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import yaml

from kernel.config import REPO_ROOT
from mendloop.labproc import LabError, Proc, free_port, need

if TYPE_CHECKING:
    from mendloop.labclient import Daemon

PROMETHEUS_BIN = os.environ.get("MENDLOOP_PROMETHEUS_BIN", "/usr/bin/prometheus")
ALERTMANAGER_BIN = os.environ.get("MENDLOOP_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
T = TypeVar("T")


@dataclass
class Lab:
    """Owns the processes it starts under ``root``; a context manager that stops them."""

    root: Path
    procs: list[Proc] = field(default_factory=list)
    pidfiles: list[tuple[Path, str]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __enter__(self) -> Lab:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for pidfile, executable in self.pidfiles:
            stop_pidfile(pidfile, executable)
        self.procs.clear()
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.cleanups.clear()

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the lab closes, after its processes stopped (e.g. a service
        folder that had to live outside the lab's root)."""
        self.cleanups.append(cleanup)

    # -- processes ------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        """Start ``argv`` (no shell), output to ``<root>/<name>.log``."""
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd or self.root,
                env={**os.environ, **(env or {})},
            )
        proc = Proc(name, list(argv), popen, log)
        self.procs.append(proc)
        return proc

    def adopt_pidfile(self, pidfile: Path, executable: str) -> None:
        """A process a playbook (re)started detached: stopped with the lab, if its pid
        file still names ``executable``."""
        self.pidfiles.append((pidfile, executable))

    def wait(
        self,
        predicate: Callable[[], T],
        what: str,
        timeout: float = 60.0,
        watch: Sequence[Proc] = (),
    ) -> T:
        """Poll ``predicate`` until truthy (exceptions count as not yet); LabError with the
        last error and the watched processes' log tails when it never is, or one exits."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            for proc in watch:
                if not proc.alive:
                    raise LabError(
                        f"{proc.name} exited (rc {proc.popen.returncode}) while waiting for "
                        f"{what}:\n{proc.log_tail()}"
                    )
            try:
                value = predicate()
            except Exception as exc:  # not there yet: keep the reason for the report
                last, value = exc, None
            if value:
                return value
            if time.monotonic() > deadline:
                tails = "".join(f"\n--- {p.name}:\n{p.log_tail(1500)}" for p in watch)
                raise LabError(f"{what}: not after {timeout:.0f} s (last: {last!r}){tails}")
            time.sleep(0.2)

    def wait_http(self, url: str, proc: Proc, timeout: float = 60.0) -> None:
        """Until ``url`` answers 200."""

        def ok() -> bool:
            return httpx.get(url, timeout=2.0).status_code == 200

        self.wait(ok, f"{proc.name} at {url}", timeout, [proc])

    def wait_port(self, port: int, proc: Proc, timeout: float = 30.0) -> None:
        """Until 127.0.0.1:``port`` accepts a connection."""

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True

        self.wait(listening, f"{proc.name} on port {port}", timeout, [proc])

    # -- Prometheus and Alertmanager --------------------------------------------------

    def prometheus(
        self,
        scrape: Mapping[str, Sequence[str]],
        labels: Mapping[str, Mapping[str, str]] | None = None,
        interval: str = "1s",
        remote_write: str = "",
        token: str = "",
        alertmanager: str = "",
        rule_files: Sequence[Path] = (),
        name: str = "prometheus",
        job_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Proc:
        """A real Prometheus scraping ``scrape`` (job -> addresses; ``labels``: job -> the
        labels its series get, e.g. ``{"target": "redis-1"}``; ``job_options``: job -> more
        keys of its scrape config, e.g. a blackbox exporter's ``metrics_path`` and
        ``params``), optionally writing every sample to ``remote_write`` (with ``token``)
        and sending the alerts of ``rule_files`` to ``alertmanager``."""
        binary = need(PROMETHEUS_BIN, "prometheus")
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    **dict((job_options or {}).get(job, {})),
                    "static_configs": [
                        {"targets": list(addresses), "labels": dict((labels or {}).get(job, {}))}
                    ],
                }
                for job, addresses in scrape.items()
            ],
        }
        if remote_write:
            writer: dict[str, Any] = {
                "url": remote_write,
                "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms"},
            }
            if token:
                writer["authorization"] = {"credentials": token}
            config["remote_write"] = [writer]
        if alertmanager:
            target = alertmanager.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        path = folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        proc = self.spawn(
            name,
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
        )
        proc.url = f"http://127.0.0.1:{port}"
        self.wait_http(f"{proc.url}/-/ready", proc)
        return proc

    def alertmanager(self, webhook: str, token: str = "", name: str = "alertmanager") -> Proc:
        """A real Alertmanager sending every alert at once to ``webhook`` (resolved too)."""
        binary = need(ALERTMANAGER_BIN, "prometheus-alertmanager")
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        hook: dict[str, Any] = {"url": webhook, "send_resolved": True}
        if token:
            hook["http_config"] = {"authorization": {"credentials": token}}
        config = {
            "route": {
                "receiver": "mendloop",
                "group_by": ["alertname", "instance"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "mendloop", "webhook_configs": [hook]}],
        }
        path = folder / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        proc = self.spawn(
            name,
            [
                binary,
                f"--config.file={path}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
        )
        proc.url = f"http://127.0.0.1:{port}"
        self.wait_http(f"{proc.url}/-/ready", proc)
        return proc

    # -- the daemon -------------------------------------------------------------------

    def daemon(
        self,
        site: Path,
        neo4j: Mapping[str, str],
        prometheus_url: str = "",
        alerts_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "mendloop",
        port: int = 0,
    ) -> Daemon:
        """`mendloop --site SITE run` with its own var dir and SQLite, API auth on and an
        admin token (also the token Prometheus and Alertmanager send), pulling from
        ``prometheus_url`` when given. ``neo4j``: NEO4J_URI/USER/PASSWORD. ``port``: the
        API's (0: a free one), chosen ahead when Alertmanager must know the webhook first."""
        from mendloop.labclient import Daemon, issue_token

        var = self.root / name
        var.mkdir(exist_ok=True)
        database = f"sqlite:///{var / 'mendloop.db'}"
        token = issue_token(database)
        port = port or free_port()
        values = {
            "MENDLOOP_VAR_DIR": str(var),
            "MENDLOOP_DATABASE_URL": database,
            "MENDLOOP_API_PORT": str(port),
            "MENDLOOP_PROMETHEUS_URL": prometheus_url,
            "MENDLOOP_PROMETHEUS_INTERVAL_S": "1",
            "MENDLOOP_SITE": str(site),
            # the daemon runs this code (a worktree's, not only the installed one)
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            **{k: v for k, v in neo4j.items() if k.startswith("NEO4J_")},
            **(env or {}),
        }
        if alerts_file is not None:
            values["MENDLOOP_ALERTS_FILE"] = str(alerts_file)
        proc = self.spawn(name, [sys.executable, "-m", "mendloop.cli", "run"], env=values)
        proc.url = f"http://127.0.0.1:{port}"
        self.wait_http(f"{proc.url}/healthz", proc, timeout=240)
        return Daemon(proc, token, database)


def stop_pidfile(pidfile: Path, executable: str, timeout: float = 15.0) -> None:
    """SIGTERM (then SIGKILL) the pid in ``pidfile`` if /proc says it runs ``executable``."""
    try:
        pid = int(pidfile.read_text().strip())
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except (OSError, ValueError):
        return
    if os.path.realpath(exe) != os.path.realpath(executable):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                return
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
