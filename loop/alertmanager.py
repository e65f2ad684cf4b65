"""Alertmanager's webhook (payload version 4) -> points of the catalog series its alerts
drive (rules/alerts.py), so firing alerts open incidents through the site's rules and
resolved alerts are the evidence verification reads.

    intake = AlertIntake(load_alert_map(path, catalog), engine.submit, AlertState(sql))
    outcome = intake.receive(AmWebhook.model_validate(body), owner=token_id)
    intake.counters(); intake.unmapped(); intake.firing()

Per (target, series) the point is 1 while any alert mapped there fires and 0 once all have
resolved; one point per (target, series) per notification, at the time it was received.
Every alert is counted: ``firing_new``, ``firing_duplicate`` (same fingerprint and
startsAt again: Alertmanager repeats notifications), ``resolved``, ``resolved_duplicate``,
``resolved_before_firing`` (a resolved alert never seen firing: ignored) and
``unmapped_<reason>`` (kept, newest first, for ``unmapped()``: the API shows them).
Unmapped alerts are no error for Alertmanager: it would resend them for ever. What fires,
the resolutions taken and the unmapped alerts are kept in SQL (loop/alertstate.py), so a
restart loses none of them; the counters are the process's own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import SQLAlchemyError

from kernel.errors import Overloaded, StoreUnavailable
from kernel.ids import is_identifier
from loop.alertstate import AlertState, Firing, Key, Known, UnmappedRow, utc
from loop.db.engine import store_outage
from rules.alerts import AlertMap

MAX_ALERTS = 1000
MAX_LABELS = 64
MAX_NAME = 128
MAX_VALUE = 1024
MAX_ANNOTATION = 4096
RETRY_AFTER_S = 5.0
STORE_DOWN = "the SQL store is unavailable: nothing was taken, send it again"
Status = Literal["firing", "resolved"]
Submit = Callable[..., Any]
_T = TypeVar("_T")
log = logging.getLogger("mendloop.alertmanager")


def _bounded(labels: dict[str, str], value_limit: int) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for name, value in labels.items():
        if not name or len(name) > MAX_NAME:
            raise ValueError(f"label names are 1-{MAX_NAME} characters")
        if len(value) > value_limit:
            raise ValueError(f"label values are at most {value_limit} characters")
    return labels


class AmAlert(BaseModel):
    """One alert of the webhook; fields mendloop does not read are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL", max_length=2048)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,64}$")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _bounded(v, MAX_VALUE)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return _bounded(v, MAX_ANNOTATION)


class AmWebhook(BaseModel):
    """Alertmanager's webhook body, version 4, with limits on every size."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", max_length=4096)
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0, le=10**9)
    status: Status
    receiver: str = Field(max_length=256)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL", max_length=2048)
    alerts: list[AmAlert] = Field(max_length=MAX_ALERTS)

    @field_validator("group_labels", "common_labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _bounded(v, MAX_VALUE)

    @field_validator("common_annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return _bounded(v, MAX_ANNOTATION)


class Unmapped(BaseModel):
    """An alert mendloop did not take, as the API shows it."""

    received_at: float
    reason: str
    status: Status
    fingerprint: str
    alertname: str | None
    labels: dict[str, str]


class AlertOutcome(BaseModel):
    alerts: int
    counts: dict[str, int]
    points: int  # (target, series) points handed to the monitor
    accepted: int


class AlertIntake:
    """One per daemon; its state in SQL (``state``, loop/alertstate.py), its counters in
    memory. ``alert_map`` None: every alert is unmapped."""

    def __init__(
        self,
        alert_map: AlertMap | None,
        submit: Submit,
        state: AlertState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alert_map = alert_map or AlertMap([])
        self.submit = submit
        self.state = state
        self.clock = clock
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def receive(self, webhook: AmWebhook, owner: str | None = None) -> AlertOutcome:
        """Count every alert, update what fires where, hand the points to ``submit``, in one
        transaction: ``Overloaded`` from ``submit`` propagates (a 429: Alertmanager
        retries) and a store outage is ``StoreUnavailable`` (a 503: it retries), both with
        the state unchanged, so the retry is not taken for a duplicate."""
        now = self.clock()
        counts: Counter[str] = Counter(notifications=1, alerts=len(webhook.alerts))
        if webhook.truncated_alerts:
            counts["truncated_alerts"] += webhook.truncated_alerts
        with self._lock:
            try:
                batch, accepted = self._apply(webhook, owner, now, counts)
            except Overloaded:
                self._counts["shed_overload"] += 1
                raise
            except SQLAlchemyError as exc:
                if not store_outage(exc):
                    raise
                self._counts["store_unavailable"] += 1
                log.warning("Alertmanager notification refused (503): the store is down: %s", exc)
                raise StoreUnavailable(STORE_DOWN, RETRY_AFTER_S) from exc
            self._counts.update(counts)
        return AlertOutcome(
            alerts=len(webhook.alerts), counts=dict(counts), points=len(batch), accepted=accepted
        )

    def _apply(
        self, webhook: AmWebhook, owner: str | None, now: float, counts: Counter[str]
    ) -> tuple[list[dict[str, Any]], int]:
        with self.state.notification() as tx:
            before = tx.known(a.fingerprint for a in webhook.alerts)
            after = Known(dict(before.firing), set(before.resolved))
            changed: set[Key] = set()
            unmapped: list[UnmappedRow] = []
            for alert in webhook.alerts:
                reason = apply_alert(alert, self.alert_map, after, changed, counts)
                if reason is not None:
                    counts[f"unmapped_{reason}"] += 1
                    unmapped.append(_unmapped(alert, reason, now))
            tx.save(before, after, now)
            for _, key in tx.let_go(self.state.remembered):  # bounded: the oldest let go
                changed.add(key)
                counts["forgotten_firing"] += 1
            levels = tx.levels(changed)
            batch = [
                {
                    "series": series,
                    "labels": {"target": target},
                    "ts": now,
                    "value": 1.0 if levels[(target, series)] else 0.0,
                }
                for target, series in sorted(changed)
            ]
            accepted = 0
            if batch:
                result = self.submit(batch, owner=owner)
                accepted = result.accepted
                counts.update(f"points_{r.reason}" for r in result.rejected)
            tx.keep_unmapped(unmapped)
        return batch, accepted

    def counters(self) -> dict[str, int]:
        """What this process received since it started (the state itself is in SQL)."""
        with self._lock:
            return dict(sorted(self._counts.items()))

    def unmapped(self) -> list[Unmapped]:
        """The newest unmapped alerts first (at most the state's ``kept_unmapped``)."""
        return [Unmapped.model_validate(row) for row in self._read(self.state.unmapped)]

    def firing(self) -> dict[str, list[str]]:
        """target -> the catalog series an alert fires on now."""
        return self._read(self.state.firing)

    def _read(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except SQLAlchemyError as exc:
            if not store_outage(exc):
                raise
            with self._lock:
                self._counts["store_unavailable_reads"] += 1
            raise StoreUnavailable(STORE_DOWN, RETRY_AFTER_S) from exc


def apply_alert(
    alert: AmAlert,
    alert_map: AlertMap,
    known: Known,
    changed: set[Key],
    counts: Counter[str],
) -> str | None:
    """One alert against ``known`` (changed in place, pure otherwise): the unmapped reason,
    or None. ``changed`` gets the (target, series) whose level may have moved."""
    fp, starts_at = alert.fingerprint, utc(alert.starts_at)
    if alert.status == "resolved":
        if (fp, starts_at) in known.resolved:
            counts["resolved_duplicate"] += 1
            return None
        seen = known.firing.pop(fp, None)
        if seen is None:  # Alertmanager may merge startsAt: the fingerprint decides
            counts["resolved_before_firing"] += 1
            return None
        known.resolved.add((fp, starts_at))
        changed.add(seen.key)
        counts["resolved"] += 1
        return None
    seen = known.firing.get(fp)
    if seen is not None and seen.starts_at == starts_at:
        counts["firing_duplicate"] += 1
        known.seen.add(fp)
        return None
    mapping, reason = alert_map.find(alert.labels)
    if mapping is None:
        return reason
    target = alert.labels.get(mapping.target_label, "")
    if not target:
        return "missing_labels"
    if not is_identifier(target):
        return "bad_target"
    if seen is not None:  # the same alert fired again (a new startsAt): the old one ended
        changed.add(seen.key)
    firing = Firing(starts_at, target, mapping.series)
    known.firing[fp] = firing
    changed.add(firing.key)
    counts["firing_new"] += 1
    return None


def _unmapped(alert: AmAlert, reason: str, now: float) -> UnmappedRow:
    return UnmappedRow(
        received_at=now,
        reason=reason,
        status=alert.status,
        fingerprint=alert.fingerprint,
        alertname=alert.labels.get("alertname"),
        labels=dict(alert.labels),
    )
