"""Prometheus remote-write 1.0 receiver: the high-volume push path.

    app.include_router(remote_write_router(RemoteWriteReceiver(monitor, took=engine.took)))

    POST /api/v1/write   (Prometheus' conventional path)    POST /v1/write (the same)
    GET  /v1/intake/remote_write                             the receiver's counters

Prometheus configures it as ``remote_write: [{url: http://HOST/api/v1/write,
authorization: {credentials: mlt_...}}]`` (an operator token, like every push). The body is
a snappy block (``Content-Encoding: snappy``) holding a ``prometheus.WriteRequest``
(``Content-Type: application/x-protobuf``, ``X-Prometheus-Remote-Write-Version: 0.1.0``).

Answers, as remote-write senders read them: 200 with counts when the body decoded (points
refused one by one, e.g. a metric not in the catalog, are counted by reason in
``/v1/intake``, not a reason to resend); 400 for a bad snappy frame, bad protobuf or bad
labels (``reason`` in the answer; Prometheus does not retry a 4xx); 413 for a body too
large; 415 for another encoding or remote-write 2.0; 429 with Retry-After when the intake
is busy (Prometheus retries); with several workers, 503 with Retry-After when samples of
another worker's target could not be handed to it (Prometheus retries the whole request;
what was taken already counts as duplicate: loop/cluster/remote_write.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.ingest import busy
from kernel.errors import Overloaded
from loop.sources.remote_write import RefusalReason, RemoteWriteError
from loop.sources.remote_write_intake import RemoteWriteOutcome

PATHS = ("/api/v1/write", "/v1/write")
STATUS = {RefusalReason.TOO_LARGE: 413, RefusalReason.INTERNAL: 500}


class Receiver(Protocol):
    """``RemoteWriteReceiver``, or on a worker of several ``ClusterRemoteWrite`` (it forwards
    other workers' targets and raises ``ForwardRefused``: 503 + Retry-After, api/cluster.py)."""

    def receive(self, body: bytes, owner: str | None = None) -> RemoteWriteOutcome: ...

    def counters(self) -> dict[str, int]: ...


def remote_write_router(receiver: Receiver, max_body_bytes: int) -> APIRouter:
    """The receiver's routes; roles come from the ingest dependency (api/app.py)."""
    router = APIRouter(tags=["ingest"])

    async def write(request: Request) -> Any:
        _check_headers(request)
        body = await request.body()
        if len(body) > max_body_bytes:
            raise HTTPException(413, f"body is larger than {max_body_bytes} bytes")
        principal = getattr(request.state, "principal", None)
        owner = getattr(principal, "token_id", None)
        try:
            outcome = await run_in_threadpool(receiver.receive, body, owner)
        except RemoteWriteError as exc:
            status = STATUS.get(exc.reason, 400)
            return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=status)
        except Overloaded as exc:
            raise busy(exc) from exc
        return outcome.as_json()

    for path in PATHS:
        router.add_api_route(
            path,
            write,
            methods=["POST"],
            summary="Prometheus remote-write 1.0 (snappy + protobuf)",
            name=f"remote_write{path.replace('/', '_')}",
        )

    @router.get("/v1/intake/remote_write")
    def remote_write_counts() -> dict[str, int]:
        """Remote-write requests, samples, requests refused whole (``refused_<reason>``)
        and what requests held besides float samples; points refused one by one are in
        ``/v1/intake``."""
        return receiver.counters()

    return router


def _check_headers(request: Request) -> None:
    """415 for what this receiver does not speak (another encoding, remote-write 2.0)."""
    encoding = request.headers.get("content-encoding", "snappy").strip().lower()
    if encoding != "snappy":
        raise HTTPException(415, f"Content-Encoding {encoding!r}: remote-write needs snappy")
    media = request.headers.get("content-type", "application/x-protobuf").lower()
    kind, _, params = media.partition(";")
    if kind.strip() != "application/x-protobuf":
        raise HTTPException(415, f"Content-Type {kind.strip()!r}: expected application/x-protobuf")
    proto = params.replace(" ", "")
    if "proto=" in proto and "proto=prometheus.WriteRequest" not in proto:
        raise HTTPException(415, "remote-write 2.0 is not supported; send 1.0 (WriteRequest)")
    version = request.headers.get("x-prometheus-remote-write-version", "0.1.0").strip()
    if not version.startswith("0.1"):
        raise HTTPException(415, f"remote-write version {version[:20]!r}: 0.1.0 is supported")
