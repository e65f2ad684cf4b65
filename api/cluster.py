"""The API between workers (several workers on one PostgreSQL, loop/cluster/).

    install_cluster(app, engine.submit, owns, key)

    GET  /v1/cluster           this worker: its id, the targets it holds, what its intake
                               took, forwarded, claimed and refused (viewer)
    POST /v1/cluster/samples   samples a peer forwarded (signed with the cluster key in
                               SQL, not an API token): taken when this worker owns every
                               target in them, else 421 with who owns what (the peer then
                               refuses them to the sender with 503 + Retry-After)
    POST /v1/cluster/write     the part of a remote-write request a peer forwarded (a frame,
                               loop/cluster/remote_write.py; signed likewise, 421 likewise)

A push to a worker that cannot take it (owner unreachable, no live owner yet) is answered
``503`` with ``Retry-After`` and ``X-Mendloop-Owner`` (the owner's API when known): the
sender sees a clear status and retries; nothing is dropped without it being told.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import Role, require
from api.deps import Submit
from kernel.errors import Overloaded
from loop.cluster.forward import PATH, SIGNATURE, ForwardRefused, sign, target_of
from loop.cluster.remote_write import WRITE_PATH, ForwardedWrites
from loop.sources.remote_write import RemoteWriteError

MAX_FORWARD_BYTES = 64 * 1024 * 1024


async def signed_body(request: Request, key: bytes) -> bytes:
    """The body of a peer's request, when signed with the cluster key (else 401)."""
    body = await request.body()
    if len(body) > MAX_FORWARD_BYTES:
        raise HTTPException(413, "forwarded body too large")
    given = request.headers.get(SIGNATURE, "")
    if not hmac.compare_digest(given.encode(), sign(key, body).encode()):
        raise HTTPException(401, "not signed with the cluster key")
    return body


def moved(targets: list[str]) -> JSONResponse:
    return JSONResponse(
        {"detail": "not the owner of these targets (lease moved)", "targets": targets},
        status_code=421,
    )


def too_busy(exc: Overloaded) -> JSONResponse:
    retry = str(max(1, round(exc.retry_after_s)))
    return JSONResponse({"detail": str(exc)}, 429, headers={"Retry-After": retry})


def cluster_router(
    submit: Submit, owns: Callable[[str], bool], key: bytes, writes: ForwardedWrites | None
) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post(PATH, include_in_schema=False)
    async def forwarded(request: Request) -> Any:
        body = await signed_body(request, key)
        try:
            data = json.loads(body)
            samples = data["samples"]
            owner = data.get("owner")
            if not isinstance(samples, list) or not (owner is None or isinstance(owner, str)):
                raise TypeError("samples must be a list, owner a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPException(400, f"bad forward: {exc}") from exc
        strangers = sorted({t for s in samples if (t := target_of(s)) and not owns(t)})
        if strangers:
            return moved(strangers)
        try:
            result = await run_in_threadpool(submit, samples, owner=owner)
        except Overloaded as exc:
            return too_busy(exc)
        return {
            "accepted": result.accepted,
            "late": result.late,
            "duplicate": result.duplicate,
            "rejected": [
                {"index": r.index, "error": r.error, "reason": r.reason} for r in result.rejected
            ],
        }

    if writes is not None:

        @router.post(WRITE_PATH, include_in_schema=False)
        async def forwarded_write(request: Request) -> Any:
            body = await signed_body(request, key)
            try:
                outcome = await run_in_threadpool(writes.take, body, owns)
            except RemoteWriteError as exc:
                return JSONResponse({"detail": str(exc), "reason": exc.reason}, 400)
            except Overloaded as exc:
                return too_busy(exc)
            return moved(outcome) if isinstance(outcome, list) else outcome.as_json()

    return router


def refused(_request: Request, exc: Exception) -> JSONResponse:
    """A push this worker could not hand to its owner: 503, retry (never a silent drop)."""
    assert isinstance(exc, ForwardRefused)
    headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    if exc.owner_url:
        headers["X-Mendloop-Owner"] = exc.owner_url
    return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)


def install_cluster(
    app: FastAPI,
    submit: Submit,
    owns: Callable[[str], bool],
    key: bytes,
    status: Callable[[], dict[str, Any]],
    writes: ForwardedWrites | None = None,
) -> None:
    """The peer routes, the worker's status and the 503 of refused forwards on its app."""
    app.include_router(cluster_router(submit, owns, key, writes))
    app.add_exception_handler(ForwardRefused, refused)

    @app.get("/v1/cluster", tags=["operations"], dependencies=[Depends(require(Role.viewer))])
    def cluster_status() -> dict[str, Any]:
        """This worker of several: the targets it holds and its intake's counters."""
        return status()
