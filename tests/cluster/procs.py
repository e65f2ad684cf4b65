"""Real worker processes (`mendloop run`) on one PostgreSQL for the tests of tests/cluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from twin.server import HttpSink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """One `mendloop run` with its own var/ and API port, on the shared database."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        self.env = {
            **env,
            "MENDLOOP_VAR_DIR": str(tmp / name),
            "MENDLOOP_API_PORT": str(self.port),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mendloop.cli", "run"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes its ansible too
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def status(self, token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.api}/v1/cluster", headers=headers, timeout=10).json()


def wait_for(
    predicate: Callable[[], Any], what: str, workers: list[Worker], timeout_s: float = 300
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        for worker in workers:
            assert worker.alive(), f"{worker.name} exited before: {what}\n{worker.tail()}"
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.3)


def holders(engine: Engine) -> dict[str, str | None]:
    """target -> the worker whose lease is live now (None: no live owner)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT target, CASE WHEN expires_at > now() THEN worker_id END AS w "
                "FROM target_lease"
            )
        ).all()
    return {r.target: r.w for r in rows}


def worker_ids(engine: Engine) -> dict[str, str]:
    """api_url -> worker id."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, api_url FROM worker")).all()
    return {r.api_url: r.id for r in rows}


class FailoverSink:
    """The twin's pusher with two workers: the first that answers takes the batch (a push
    refused with 503 is retried after its Retry-After by ``HttpSink`` itself)."""

    def __init__(self, urls: list[str], token: str) -> None:
        self.sinks = [HttpSink(u, token=token, retries=5) for u in urls]
        self.failovers = 0

    def __call__(self, samples: list[Any]) -> None:
        last: Exception | None = None
        for sink in self.sinks:
            try:
                sink(samples)
                return
            except httpx.HTTPError as exc:
                self.failovers += 1
                last = exc
        assert last is not None
        raise last

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
