"""Alertmanager's webhook (payload version 4) -> points of the catalog series its alerts
drive (rules/alerts.py), so firing alerts open incidents through the site's rules and
resolved alerts are the evidence verification reads.

    intake = AlertIntake(load_alert_map(path, catalog), engine.submit)
    outcome = intake.receive(AmWebhook.model_validate(body), owner=token_id)
    intake.counters(); intake.unmapped()

Per (target, series) the point is 1 while any alert mapped there fires and 0 once all have
resolved; one point per (target, series) per notification, at the time it was received.
Every alert is counted: ``firing_new``, ``firing_duplicate`` (same fingerprint and
startsAt again: Alertmanager repeats notifications), ``resolved``, ``resolved_duplicate``,
``resolved_before_firing`` (a resolved alert never seen firing, e.g. across a restart:
ignored) and ``unmapped_<reason>`` (kept, newest first, for ``unmapped()``: the API shows
them). Unmapped alerts are no error for Alertmanager: it would resend them for ever.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kernel.errors import Overloaded
from kernel.ids import is_identifier
from rules.alerts import AlertMap

MAX_ALERTS = 1000
MAX_LABELS = 64
MAX_NAME = 128
MAX_VALUE = 1024
MAX_ANNOTATION = 4096
REMEMBERED = 20_000  # firing and resolved alerts remembered (the oldest let go, counted)
KEPT_UNMAPPED = 200
Status = Literal["firing", "resolved"]
Submit = Callable[..., Any]


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
    """Thread-safe; one per daemon. ``alert_map`` None: every alert is unmapped."""

    def __init__(
        self,
        alert_map: AlertMap | None,
        submit: Submit,
        *,
        clock: Callable[[], float] = time.time,
        remembered: int = REMEMBERED,
        kept_unmapped: int = KEPT_UNMAPPED,
    ) -> None:
        self.alert_map = alert_map or AlertMap([])
        self.submit = submit
        self.clock = clock
        self.remembered = remembered
        self._firing: OrderedDict[str, tuple[datetime, str, str]] = OrderedDict()
        self._resolved: OrderedDict[tuple[str, datetime], None] = OrderedDict()
        self._active: dict[tuple[str, str], set[str]] = {}
        self._unmapped: deque[Unmapped] = deque(maxlen=kept_unmapped)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def receive(self, webhook: AmWebhook, owner: str | None = None) -> AlertOutcome:
        """Count every alert, update what fires where, hand the points to ``submit``.
        ``Overloaded`` from ``submit`` propagates (a 429: Alertmanager retries) with the
        state unchanged, so the retry is not taken for a duplicate."""
        now = self.clock()
        counts: Counter[str] = Counter(notifications=1, alerts=len(webhook.alerts))
        if webhook.truncated_alerts:
            counts["truncated_alerts"] += webhook.truncated_alerts
        with self._lock:
            firing = self._firing.copy()
            resolved = self._resolved.copy()
            active = {key: set(fps) for key, fps in self._active.items()}
            changed: set[tuple[str, str]] = set()
            unmapped: list[Unmapped] = []
            for alert in webhook.alerts:
                reason = self._apply(alert, firing, resolved, active, changed, counts)
                if reason is not None:
                    counts[f"unmapped_{reason}"] += 1
                    unmapped.append(_unmapped(alert, reason, now))
            while len(firing) > self.remembered:  # bounded: the oldest firing is let go
                fp, (_, target, series) = firing.popitem(last=False)
                active.get((target, series), set()).discard(fp)
                changed.add((target, series))
                counts["forgotten_firing"] += 1
            batch = [
                {
                    "series": series,
                    "labels": {"target": target},
                    "ts": now,
                    "value": 1.0 if active.get((target, series)) else 0.0,
                }
                for target, series in sorted(changed)
            ]
            accepted = 0
            if batch:
                try:
                    result = self.submit(batch, owner=owner)
                except Overloaded:
                    self._counts["shed_overload"] += 1
                    raise
                accepted = result.accepted
                counts.update(f"points_{r.reason}" for r in result.rejected)
            self._firing, self._resolved = firing, _trim(resolved, self.remembered)
            self._active = {key: fps for key, fps in active.items() if fps}
            self._unmapped.extendleft(unmapped)
            self._counts.update(counts)
        return AlertOutcome(
            alerts=len(webhook.alerts), counts=dict(counts), points=len(batch), accepted=accepted
        )

    def _apply(
        self,
        alert: AmAlert,
        firing: OrderedDict[str, tuple[datetime, str, str]],
        resolved: OrderedDict[tuple[str, datetime], None],
        active: dict[tuple[str, str], set[str]],
        changed: set[tuple[str, str]],
        counts: Counter[str],
    ) -> str | None:
        """One alert against the state copies; the unmapped reason, or None."""
        fp = alert.fingerprint
        if alert.status == "resolved":
            if (fp, alert.starts_at) in resolved:
                counts["resolved_duplicate"] += 1
                return None
            seen = firing.get(fp)
            if seen is None:  # Alertmanager may merge startsAt: the fingerprint decides
                counts["resolved_before_firing"] += 1
                return None
            del firing[fp]
            resolved[(fp, alert.starts_at)] = None
            key = (seen[1], seen[2])
            active.get(key, set()).discard(fp)
            changed.add(key)
            counts["resolved"] += 1
            return None
        seen = firing.get(fp)
        if seen is not None and seen[0] == alert.starts_at:
            counts["firing_duplicate"] += 1
            firing.move_to_end(fp)
            return None
        mapping, reason = self.alert_map.find(alert.labels)
        if mapping is None:
            return reason
        target = alert.labels.get(mapping.target_label, "")
        if not target:
            return "missing_labels"
        if not is_identifier(target):
            return "bad_target"
        if seen is not None:  # the same alert fired again (a new startsAt): the old one ended
            active.get((seen[1], seen[2]), set()).discard(fp)
        firing[fp] = (alert.starts_at, target, mapping.series)
        key = (target, mapping.series)
        active.setdefault(key, set()).add(fp)
        changed.add(key)
        counts["firing_new"] += 1
        return None

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def unmapped(self) -> list[Unmapped]:
        """The newest unmapped alerts first (at most ``kept_unmapped``)."""
        with self._lock:
            return list(self._unmapped)

    def firing(self) -> dict[str, list[str]]:
        """target -> the catalog series an alert fires on now."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for target, series in sorted(self._active):
                out.setdefault(target, []).append(series)
            return out


def _unmapped(alert: AmAlert, reason: str, now: float) -> Unmapped:
    return Unmapped(
        received_at=now,
        reason=reason,
        status=alert.status,
        fingerprint=alert.fingerprint,
        alertname=alert.labels.get("alertname"),
        labels=dict(alert.labels),
    )


def _trim(items: OrderedDict[Any, Any], limit: int) -> OrderedDict[Any, Any]:
    while len(items) > limit:
        items.popitem(last=False)
    return items
