"""Push intake in foreign formats: Prometheus text exposition and OTLP/HTTP JSON.

    app.include_router(ingest_router(engine.submit))

    POST /v1/samples/prometheus   text/plain exposition format 0.0.4
    POST /v1/metrics              OTLP/HTTP ExportMetricsServiceRequest, JSON encoding

Both parse the body (``loop.sources``), hand the samples to ``submit`` and answer like
``POST /v1/samples``: ``{"accepted", "stale", "rejected": [...]}``, where each rejection
says where it was (``line`` of the text, or OTLP ``metric``), how many data points it cost
and why: parse problems and the engine's refusals (e.g. a metric not in the catalog, a
target that is not an identifier, a new series past a limit) alike, so nothing is dropped
without the sender being told. The parse refusals go to ``submit`` with the samples
(``refused=``), so the monitor's counters (``GET /v1/intake``) hold every point of every
push: accepted + stale + rejected_points = the points sent. ``GET /v1/intake/sources`` is
the part of those the parsers refused, already inside ``/v1/intake`` (never to be added).

``/v1/metrics`` also answers as OTLP clients expect: ``partialSuccess`` (rejectedDataPoints,
errorMessage) when some points were refused; 400 with a ``code``/``message`` status when
none was taken; 415 for ``application/x-protobuf`` (only JSON is supported). The text
endpoint answers 422 when nothing was taken, as ``/v1/samples`` does. Bodies may be gzip
(``Content-Encoding: gzip``) and are capped at ``max_body_bytes`` (413 beyond).
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Submit
from kernel.errors import Overloaded
from loop.monitor import IngestResult
from loop.sources.base import DEFAULT_TARGET_LABELS, NameMap, ParseResult, SampleMapper, identity
from loop.sources.otlp import (
    DEFAULT_TARGET_ATTRIBUTES,
    OtlpPayloadError,
    parse_otlp_json,
    partial_success,
)
from loop.sources.promtext import parse_with

MAX_BODY_BYTES = 16 * 1024 * 1024
TEXT_TYPES = ("", "text/plain", "application/openmetrics-text")
GRPC_INVALID_ARGUMENT = 3


class SourceRejection(BaseModel):
    """One refusal: ``line`` (exposition text) or ``metric`` (OTLP) says where it was;
    ``reason`` is the counter it is booked under (the monitor's, plus ``parse_error`` and
    ``unsupported``); ``points`` how many data points it cost."""

    line: int | None = None
    metric: str | None = None
    points: int = 1
    error: str
    reason: str


class SourceIngestOut(BaseModel):
    accepted: int
    stale: int
    late: int
    duplicate: int
    rejected: list[SourceRejection]
    rejected_points: int
    batch_refused: bool = False


def outcome(parsed: ParseResult, result: IngestResult) -> SourceIngestOut:
    """Parse issues and the engine's rejections, in one list, each pointing at its origin."""
    rejected = [
        SourceRejection(
            line=i.line, metric=i.metric, points=i.points, error=i.error, reason=i.reason
        )
        for i in parsed.issues
    ]
    refused = False
    for r in result.rejected:
        if 0 <= r.index < len(parsed.origins):
            origin = parsed.origins[r.index]
            where = {"line": origin.line, "metric": origin.metric}
            rejected.append(SourceRejection(**where, error=r.error, reason=r.reason))
        else:  # the batch as a whole (e.g. oversized): every parsed point is refused
            refused = True
            points = len(parsed.samples)
            rejected.append(SourceRejection(points=points, error=r.error, reason=r.reason))
    return SourceIngestOut(
        accepted=result.accepted,
        stale=result.stale,
        late=result.late,
        duplicate=result.duplicate,
        rejected=sorted(rejected, key=lambda r: (r.line or 0, r.metric or "")),
        rejected_points=sum(r.points for r in rejected),
        batch_refused=refused,
    )


def push_status(refused_whole: bool, rejected: bool, taken: bool) -> int:
    """The status of every push endpoint: 413 for a batch refused whole, 422 when nothing
    was usable, else 200 (the body says what was rejected and why)."""
    if refused_whole:
        return 413
    return 422 if rejected and not taken else 200


def busy(exc: Overloaded) -> HTTPException:
    """A full intake: 429 with Retry-After, so senders retry instead of losing data."""
    retry = str(max(1, round(exc.retry_after_s)))
    return HTTPException(429, str(exc), headers={"Retry-After": retry})


def ingest_router(
    submit: Submit,
    *,
    name_map: NameMap = identity,
    target_labels: Sequence[str] = DEFAULT_TARGET_LABELS,
    target_attributes: Sequence[str] = DEFAULT_TARGET_ATTRIBUTES,
    default_target: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    units: Mapping[str, str] | None = None,
) -> APIRouter:
    """The two push endpoints over ``submit`` (the engine's, e.g. ``Daemon.submit``).

    ``target_labels`` (text) and ``target_attributes`` (OTLP, resource attributes) say
    where the target is; ``default_target`` is used when none is there (else the sample
    is rejected). ``name_map`` maps foreign metric names to catalog names.
    """
    router = APIRouter(tags=["ingest"])
    counts: Counter[str] = Counter()
    counts_lock = threading.Lock()
    text_mapper = SampleMapper(name_map, tuple(target_labels), default_target)

    async def body_of(request: Request) -> bytes:
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise HTTPException(413, f"body is larger than {max_body_bytes} bytes")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding != "gzip":
            raise HTTPException(415, f"Content-Encoding {encoding!r} is not supported (gzip is)")
        try:
            inflater = zlib.decompressobj(wbits=31)
            data = inflater.decompress(raw, max_body_bytes + 1)
        except zlib.error as exc:
            raise HTTPException(400, f"body is not valid gzip: {exc}") from exc
        if len(data) > max_body_bytes or inflater.unconsumed_tail:
            raise HTTPException(413, f"body inflates past {max_body_bytes} bytes")
        return data

    def take(parsed: ParseResult, owner: str | None) -> SourceIngestOut:
        """Submit with the parse refusals; ``Overloaded`` becomes 429 with Retry-After (the
        sender retries; the parse refusals stay counted: they were refused either way)."""
        refused: Counter[str] = Counter()
        for issue in parsed.issues:
            refused[issue.reason] += issue.points
        with counts_lock:
            counts.update(refused)
        try:
            result = submit(list(parsed.samples), owner=owner, refused=refused)
        except Overloaded as exc:
            raise busy(exc) from exc
        return outcome(parsed, result)

    def status_of(out: SourceIngestOut) -> int:
        return push_status(out.batch_refused, bool(out.rejected), bool(out.accepted or out.stale))

    @router.get("/v1/intake/sources")
    def source_counts() -> dict[str, int]:
        """Points the text and OTLP parsers refused before the monitor saw them, by reason.
        They are booked in ``/v1/intake`` as well (a part of it, not in addition to it)."""
        with counts_lock:
            return dict(sorted(counts.items()))

    @router.post("/v1/samples/prometheus", response_model=SourceIngestOut)
    async def post_prometheus_text(request: Request) -> Any:
        media = _media_type(request)
        if media not in TEXT_TYPES:
            raise HTTPException(
                415,
                f"expected the Prometheus text exposition format (text/plain), not {media}",
            )
        try:
            text = (await body_of(request)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"body is not UTF-8 text: {exc}") from exc
        parsed = await run_in_threadpool(parse_with, text, text_mapper)
        out = await run_in_threadpool(take, parsed, _owner(request))
        return JSONResponse(out.model_dump(), status_code=status_of(out))

    @router.post("/v1/metrics")
    async def post_otlp_metrics(request: Request) -> Any:
        media = _media_type(request)
        if media == "application/x-protobuf":
            raise HTTPException(
                415,
                "OTLP/HTTP protobuf encoding is not supported here; send the JSON encoding "
                "(Content-Type: application/json), e.g. OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="
                "http/json",
            )
        if media not in ("application/json", ""):
            raise HTTPException(415, f"expected OTLP/HTTP JSON (application/json), not {media}")
        body = await body_of(request)
        try:
            parsed = await run_in_threadpool(
                lambda: parse_otlp_json(
                    body,
                    name_map=name_map,
                    target_attributes=target_attributes,
                    default_target=default_target,
                    units=units,
                )
            )
        except OtlpPayloadError as exc:
            return JSONResponse(
                {"code": GRPC_INVALID_ARGUMENT, "message": str(exc), "details": []}, 400
            )
        out = await run_in_threadpool(take, parsed, _owner(request))
        messages = [_describe(r) for r in out.rejected]
        if out.stale:
            messages.append(f"{out.stale} data point(s) not newer than the last one kept")
        answer: dict[str, Any] = partial_success(out.rejected_points, messages)
        answer |= out.model_dump()
        status = status_of(out)
        if status == 422:  # OTLP: bad data that must not be retried is a 400
            status = 400
        if status != 200:
            answer |= {"code": GRPC_INVALID_ARGUMENT, "message": "; ".join(messages[:20])}
        return JSONResponse(answer, status_code=status)

    return router


def _owner(request: Request) -> str | None:
    """The pushing token (set by the auth dependency), for its own cardinality limits."""
    principal = getattr(request.state, "principal", None)
    return getattr(principal, "token_id", None)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _describe(r: SourceRejection) -> str:
    where = f"line {r.line}" if r.line is not None else f"metric {r.metric!r}"
    return f"{where}: {r.error}"


__all__ = ["SourceIngestOut", "SourceRejection", "ingest_router", "outcome"]
