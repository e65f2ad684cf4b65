"""A real Prometheus for the source tests: ``/usr/bin/prometheus`` (Debian package
``prometheus``) started as a subprocess with its own config, data dir and free port.

    def test_x(start_prometheus):
        prom = start_prometheus(["127.0.0.1:9108"])       # scrapes every 1 s
        prom.wait_for(lambda: ..., "the twin's series")    # bounded, log tail on failure

A missing binary FAILS (CI installs the package; a skip would hide that nothing ran).
Set MENDLOOP_PROMETHEUS_BIN to use another binary.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

PROMETHEUS_BIN = Path(os.environ.get("MENDLOOP_PROMETHEUS_BIN", "/usr/bin/prometheus"))
NODE_EXPORTER_BIN = Path(
    os.environ.get("MENDLOOP_NODE_EXPORTER_BIN", "/usr/bin/prometheus-node-exporter")
)
START_TIMEOUT_S = 30.0

CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: [{targets}]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusProcess:
    """One Prometheus server: its URL, its log, and a clean stop."""

    def __init__(self, workdir: Path, targets: list[str], job: str, interval: str) -> None:
        if not PROMETHEUS_BIN.exists():
            pytest.fail(
                f"{PROMETHEUS_BIN} is missing: install Prometheus with "
                "`apt-get install -y prometheus` (the Debian package; ./dev and CI install "
                "it) or set MENDLOOP_PROMETHEUS_BIN",
                pytrace=False,
            )
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        quoted = ", ".join(f'"{t}"' for t in targets)
        self.config.write_text(CONFIG.format(interval=interval, job=job, targets=quoted))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS_BIN),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=info",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """Poll ``predicate`` until it is truthy; fail with Prometheus' log tail if not."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"Prometheus exited (rc {self.proc.returncode}) while waiting for {what}; "
                    f"log tail:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                value = predicate()
            except Exception as exc:  # not there yet: keep the last reason for the report
                last_error, value = exc, None
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(
            f"{what}: not there after {timeout:.0f} s (last error: {last_error!r}); "
            f"Prometheus log tail:\n{self.log_tail()}",
            pytrace=False,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        def ready() -> bool:
            return httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200

        self.wait_for(ready, f"Prometheus ready on {self.url}", timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()


@pytest.fixture(scope="module")
def start_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusProcess]]:
    """Start Prometheus servers scraping the given targets; all are stopped at the end of
    the module (module scope: a start costs a second or two, tests of a module share it)."""
    started: list[PrometheusProcess] = []

    def start(targets: list[str], job: str = "twin", interval: str = "1s") -> PrometheusProcess:
        prom = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), targets, job, interval)
        started.append(prom)
        prom.wait_ready()
        return prom

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    """The Debian node_exporter (``prometheus-node-exporter``) on a free port, filesystem and
    loadavg collectors only; it reports this machine's mount points (``/``, ``/dev/shm``:
    several series of one metric, told apart by the ``mountpoint`` label). Its address.
    Mounts under /tmp are left out: other test runs on the machine mount tmpfs there (the
    linux-host lab), which would come and go under the tests' catalogs."""
    if not NODE_EXPORTER_BIN.exists():
        pytest.fail(
            f"{NODE_EXPORTER_BIN} is missing: apt-get install -y prometheus-node-exporter",
            pytrace=False,
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            str(NODE_EXPORTER_BIN),
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.filesystem",
            "--collector.loadavg",
            "--collector.filesystem.mount-points-exclude=^/(proc|sys|mnt|run|tmp)($|/)",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"node_exporter did not answer on port {port}", pytrace=False)
        time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
