"""The twin's HTTP control surface and the runner that ticks it in real time.

    >>> runner = TwinRunner(Twin(), tick_s=1.0, sink=samples.extend, port=0)
    >>> runner.start()                       # tick thread + uvicorn thread, returns when bound
    >>> httpx.post(f"{runner.url}/faults", json={"target": "pm-site-1", "fault": "db_io_wait"})
    >>> runner.stop()

Endpoints (``create_twin_app``):

    GET  /metrics            Prometheus text exposition of the latest values (all series)
    GET  /state              every target, plus the known faults and actions
    GET  /state/{target}     one target: active faults, actions applied, latest values
    POST /faults             {"target", "fault", "intensity"?}  -> state; 404 unknown
                             target, 422 unknown fault or intensity < 0
    POST /repair             {"target", "action"}  -> {"cleared": bool, ...}
    POST /rollback           {"target", "action"}  -> {"rolled_back": bool, ...}
    POST /clear              {"target"?}           -> every fault ended (all targets if none)
    GET  /healthz            liveness and tick count

The twin itself is not thread-safe: the tick thread and the request handlers share it
under ``runner.lock``; the sink is called outside the lock so a slow sink never blocks
the control API.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from kernel.models import Sample
from twin.model import (
    ACTIONS,
    FAULTS,
    Twin,
    TwinError,
    UnknownTarget,
    metric_specs,
)

log = logging.getLogger(__name__)

Sink = Callable[[list[Sample]], object]  # what it returns is not used
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FaultRequest(BaseModel):
    target: str
    fault: str
    intensity: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)


class ActionRequest(BaseModel):
    target: str
    action: str


class ClearRequest(BaseModel):
    target: str | None = None


class TwinRunner:
    """Ticks a ``Twin`` every ``tick_s`` against the wall clock and serves its API."""

    def __init__(
        self,
        twin: Twin,
        tick_s: float = 1.0,
        sink: Sink | None = None,
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self.twin = twin
        self.tick_s = tick_s
        self.sink = sink
        self.host = host
        self.lock = threading.RLock()
        self.ticks = 0
        self._port = port
        self._stop = threading.Event()
        self._tick_thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one after ``start`` when constructed with 0)."""
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._tick_thread is not None and self._tick_thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Tick once, then start the tick loop and the HTTP server; returns once serving."""
        if self._tick_thread is not None:
            raise RuntimeError("TwinRunner already started")
        # bind ourselves so port 0 resolves before uvicorn runs, and failures surface here
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._port = sock.getsockname()[1]

        self.tick()  # metrics exist before the first request
        self._stop.clear()
        self._tick_thread = threading.Thread(target=self._tick_loop, name="twin-tick", daemon=True)
        self._tick_thread.start()

        config = uvicorn.Config(
            create_twin_app(self), log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="twin-http", daemon=True
        )
        self._server_thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"twin HTTP server did not start on {self.url}")
            time.sleep(0.01)
        log.info(
            "twin serving on %s (tick %.3fs, targets %s)",
            self.url,
            self.tick_s,
            ", ".join(self.twin.targets),
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking and serving; safe to call twice or after a failed start."""
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in (self._server_thread, self._tick_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._server_thread = self._tick_thread = self._socket = None

    def __enter__(self) -> TwinRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tick(self) -> list[Sample]:
        """One step at the wall clock; the samples go to the sink (its errors are logged)."""
        with self.lock:
            samples = self.twin.step(time.time())
            self.ticks += 1
        if self.sink is not None:
            try:
                self.sink(samples)
            except Exception:
                log.exception("twin sink failed; the twin keeps ticking")
        return samples

    @contextmanager
    def locked(self) -> Iterator[Twin]:
        """The twin under the lock; control calls happen at the wall clock."""
        with self.lock:
            yield self.twin

    def _tick_loop(self) -> None:
        # fixed cadence: the next tick is scheduled from the start, so ticks do not drift
        next_at = time.monotonic() + self.tick_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.tick()
            except Exception:  # a bug in the model must not silently kill the loop
                log.exception("twin tick failed")
            next_at += self.tick_s
            if next_at < time.monotonic():  # fell behind (suspended?): skip, do not burst
                next_at = time.monotonic() + self.tick_s


def create_twin_app(runner: TwinRunner) -> FastAPI:
    """FastAPI app over ``runner.twin``; every access goes through ``runner.lock``."""
    app = FastAPI(title="mendloop twin", summary="Digital twin of the power-marketing platform")

    @contextmanager
    def twin_errors() -> Iterator[Twin]:
        with runner.locked() as twin:
            try:
                yield twin
            except UnknownTarget as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from exc
            except TwinError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        with runner.locked() as twin:
            return {
                "status": "ok",
                "targets": list(twin.targets),
                "ticks": runner.ticks,
                "time": twin.clock,
            }

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        with runner.locked() as twin:
            samples = twin.latest()
        return PlainTextResponse(prometheus_text(samples), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.get("/state")
    def all_state() -> dict[str, Any]:
        with runner.locked() as twin:
            return {
                "time": twin.clock,
                "faults": sorted(FAULTS),
                "actions": sorted(ACTIONS),
                "targets": {t: twin.state(t) for t in twin.targets},
            }

    @app.get("/state/{target}")
    def target_state(target: str) -> dict[str, Any]:
        with twin_errors() as twin:
            return twin.state(target)

    @app.post("/faults")
    def inject(req: FaultRequest) -> dict[str, Any]:
        with twin_errors() as twin:
            twin.inject(req.target, req.fault, now=time.time(), intensity=req.intensity)
            return twin.state(req.target)

    @app.post("/repair")
    def repair(req: ActionRequest) -> dict[str, Any]:
        with twin_errors() as twin:
            cleared = twin.repair(req.target, req.action, now=time.time())
            return {
                "target": req.target,
                "action": req.action,
                "cleared": cleared,
                "faults": twin.state(req.target)["faults"],
            }

    @app.post("/rollback")
    def rollback(req: ActionRequest) -> dict[str, Any]:
        with twin_errors() as twin:
            rolled_back = twin.rollback(req.target, req.action, now=time.time())
            return {
                "target": req.target,
                "action": req.action,
                "rolled_back": rolled_back,
                "faults": twin.state(req.target)["faults"],
            }

    @app.post("/clear")
    def clear(req: ClearRequest | None = None) -> dict[str, Any]:
        with twin_errors() as twin:
            targets = list(twin.targets) if req is None or req.target is None else [req.target]
            now = time.time()
            for t in targets:
                twin.clear(t, now=now)
            return {"cleared": targets}

    return app


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(samples: list[Sample]) -> str:
    """Text exposition format 0.0.4: one gauge family per series, names as-is."""
    specs = metric_specs()
    families: dict[str, list[Sample]] = {}
    for s in samples:
        families.setdefault(s.series, []).append(s)
    lines: list[str] = []
    for series, members in families.items():
        spec = specs.get(series)
        if spec is not None:
            lines.append(f"# HELP {series} {_escape(spec.help)} ({spec.unit})")
        lines.append(f"# TYPE {series} gauge")
        for s in members:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            lines.append(f"{series}{{{labels}}} {s.value!r}")
    return "\n".join(lines) + "\n" if lines else ""


class HttpSink:
    """POSTs each batch as ``{"samples": [...]}`` (``mendloop twin run --push URL``).

    A busy receiver (429/503) is honoured: the batch is re-sent after its Retry-After, a
    few times, before the failure is raised (and logged by the runner), never dropped
    quietly.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        retries: int = 3,
        max_wait_s: float = 2.0,
        token: str = "",
    ) -> None:
        self.url = url
        self.retries = retries
        self.max_wait_s = max_wait_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}  # operator or above
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def __call__(self, samples: list[Sample]) -> None:
        body = {"samples": [s.model_dump() for s in samples]}
        for attempt in range(self.retries + 1):
            response = self._client.post(self.url, json=body)
            busy = response.status_code in (429, 503)
            if not busy or attempt == self.retries:
                response.raise_for_status()
                return
            try:
                wait = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.0), self.max_wait_s))

    def close(self) -> None:
        self._client.close()


def http_sink(url: str, timeout: float = 5.0, token: str = "") -> HttpSink:
    """A sink for ``TwinRunner`` that pushes to the monitor's REST ingest endpoint (with
    an API token of the operator role when the daemon checks them)."""
    return HttpSink(url, timeout=timeout, token=token)


def run_forever(
    targets: tuple[str, ...] = ("pm-site-1",),
    seed: int = 0,
    tick_s: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 9108,
    push: str | None = None,
    token: str = "",
) -> None:
    """Run the twin until SIGINT/SIGTERM (``mendloop twin run``); call from the main thread."""
    sink = http_sink(push, token=token) if push else None
    runner = TwinRunner(
        Twin(targets=targets, seed=seed), tick_s=tick_s, sink=sink, host=host, port=port
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        runner.start()
        log.info(
            "twin running on %s%s; Ctrl-C to stop",
            runner.url,
            f", pushing to {push}" if push else "",
        )
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
    finally:
        runner.stop()
        if sink is not None:
            sink.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
