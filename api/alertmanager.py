"""Alertmanager's webhook receiver (loop/alertmanager.py does the work).

    POST /v1/alerts/alertmanager   the webhook, payload version 4 (operator token)
    GET  /v1/alerts/unmapped       alerts no ``alerts.yaml`` entry took, newest first
    GET  /v1/intake/alertmanager   counters: notifications, alerts, firing_new, ...

Alertmanager sends its token with ``http_config: {authorization: {credentials: mlt_...}}``.
A valid body answers 200 with what became of each alert, unmapped ones included (a 4xx
would only make Alertmanager resend them); a malformed one 422 (it does not retry a
4xx); a busy intake 429 and a store that is down 503 (it retries both; nothing was taken).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.ingest import busy
from kernel.errors import Overloaded, StoreUnavailable
from loop.alertmanager import AlertIntake, AlertOutcome, AmWebhook, Unmapped


def alertmanager_router(intake: AlertIntake) -> APIRouter:
    """The routes; their roles come from the ingest dependency (api/app.py)."""
    router = APIRouter(tags=["ingest"])

    @router.post("/v1/alerts/alertmanager", response_model=AlertOutcome)
    async def post_alerts(webhook: AmWebhook, request: Request) -> Any:
        """Alertmanager's webhook: firing alerts drive their catalog series to 1, resolved
        ones back to 0 (docs/INTAKE.md); every alert counted, unmapped ones kept."""
        principal = getattr(request.state, "principal", None)
        owner = getattr(principal, "token_id", None)
        try:
            return await run_in_threadpool(intake.receive, webhook, owner)
        except Overloaded as exc:
            raise busy(exc) from exc
        except StoreUnavailable as exc:
            raise store_down(exc) from exc

    @router.get("/v1/alerts/unmapped", response_model=list[Unmapped])
    def unmapped() -> list[Unmapped]:
        """Alerts no alerts.yaml entry took (or without the labels it needs), newest first."""
        try:
            return intake.unmapped()
        except StoreUnavailable as exc:
            raise store_down(exc) from exc

    @router.get("/v1/intake/alertmanager")
    def counts() -> dict[str, Any]:
        """What the webhook received, by outcome, and what fires where now."""
        try:
            firing = intake.firing()
        except StoreUnavailable as exc:
            raise store_down(exc) from exc
        return {"counters": intake.counters(), "firing": firing}

    return router


def store_down(exc: StoreUnavailable) -> HTTPException:
    """503 with Retry-After: Alertmanager sends the notification again, nothing is lost."""
    retry = str(max(1, round(exc.retry_after_s)))
    return HTTPException(503, str(exc), headers={"Retry-After": retry})
