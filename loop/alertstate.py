"""The Alertmanager intake's memory in SQL (loop/alertmanager.py decides, this keeps), so a
restarted daemon, or another worker on the same PostgreSQL, knows which alerts fire, which
resolutions were taken and which alerts were not: a resolution that arrives after a restart
still ends its alert, and a repeated notification is still a duplicate.

    state = AlertState(engine)
    with state.notification() as tx:        # one transaction per webhook (rolled back on error)
        known = tx.known(fingerprints)      # their Firing rows and resolutions taken
        tx.save(known, after, now)          # the difference, written
        let_go = tx.let_go(cap)             # past the cap, the oldest firing: their keys
        tx.levels(keys)                     # which (target, series) still have an alert firing
        tx.keep_unmapped(rows)
    state.firing(); state.unmapped()

Bounded: at most ``remembered`` firing alerts (the intake lets the oldest go, by their last
notification, and counts it), resolutions kept ``resolved_for_s`` and at most
``remembered`` of them (only a duplicate of an older one could then be taken again: its
alert is not firing, so it changes nothing but a counter), the newest ``kept_unmapped``
unmapped alerts. On PostgreSQL a notification holds an advisory transaction lock, so
notifications reaching two workers at once are applied one after the other.

SQL errors propagate: the intake tells an outage (``loop.db.engine.store_outage``) from a
bug, and answers the webhook 503 so Alertmanager sends it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlmodel import col

from loop.db.engine import aware
from loop.db.migrate import ensure_schema
from loop.db.schema import AlertFiringRecord, AlertResolvedRecord, AlertUnmappedRecord

REMEMBERED = 20_000  # firing alerts kept (the oldest let go past it), and resolutions
RESOLVED_FOR_S = 86_400.0  # a resolution is kept a day to tell its repeats
KEPT_UNMAPPED = 200
_LOCK_KEY = 0x616C7274  # "alrt": PostgreSQL's advisory lock of one notification
Key = tuple[str, str]  # (target, series)


def utc(value: datetime) -> datetime:
    """Alertmanager's times in UTC (a naive one is taken as UTC), so equal instants compare
    equal on SQLite too, which stores them without their offset."""
    return aware(value).astimezone(UTC)


@dataclass(frozen=True)
class Firing:
    """An alert firing: its episode (startsAt) and the (target, series) it holds at 1."""

    starts_at: datetime
    target: str
    series: str

    @property
    def key(self) -> Key:
        return (self.target, self.series)


@dataclass
class Known:
    """What the store knows of some fingerprints: the firing ones, the resolutions taken,
    and (after a notification) those seen again, whose last notification is now."""

    firing: dict[str, Firing] = field(default_factory=dict)
    resolved: set[tuple[str, datetime]] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class UnmappedRow:
    received_at: float
    reason: str
    status: str
    fingerprint: str
    alertname: str | None
    labels: dict[str, str]


class Notification:
    """One webhook's transaction (made by ``AlertState.notification``)."""

    def __init__(self, conn: Connection, state: AlertState) -> None:
        self.conn = conn
        self.state = state

    def known(self, fingerprints: Iterable[str]) -> Known:
        fps = sorted(set(fingerprints))
        if not fps:
            return Known()
        firing = self.conn.execute(
            select(AlertFiringRecord).where(col(AlertFiringRecord.fingerprint).in_(fps))
        )
        resolved = self.conn.execute(
            select(col(AlertResolvedRecord.fingerprint), col(AlertResolvedRecord.starts_at)).where(
                col(AlertResolvedRecord.fingerprint).in_(fps)
            )
        )
        return Known(
            firing={r.fingerprint: Firing(utc(r.starts_at), r.target, r.series) for r in firing},
            resolved={(r.fingerprint, utc(r.starts_at)) for r in resolved},
        )

    def save(self, before: Known, after: Known, now: float) -> None:
        """Write what changed from ``before`` to ``after`` (both of the same fingerprints)."""
        at = _at(now)
        gone = [fp for fp in before.firing if before.firing[fp] != after.firing.get(fp)]
        put = [fp for fp, f in after.firing.items() if before.firing.get(fp) != f]
        if gone:
            self.conn.execute(
                delete(AlertFiringRecord).where(col(AlertFiringRecord.fingerprint).in_(gone))
            )
        if put:
            rows = [_firing_row(fp, after.firing[fp], at) for fp in sorted(put)]
            self.conn.execute(insert(AlertFiringRecord), rows)
        seen = sorted(after.seen - set(put))
        if seen:
            self.conn.execute(
                update(AlertFiringRecord)
                .where(col(AlertFiringRecord.fingerprint).in_(seen))
                .values(seen_at=at)
            )
        taken = sorted(after.resolved - before.resolved)
        if taken:
            self.conn.execute(
                insert(AlertResolvedRecord),
                [{"fingerprint": fp, "starts_at": s, "resolved_at": at} for fp, s in taken],
            )
            self._prune_resolved(at)

    def let_go(self, cap: int) -> list[tuple[str, Key]]:
        """Past ``cap`` firing alerts, the oldest (by last notification) are deleted: their
        fingerprints and keys, for the intake to recompute and count."""
        count = self.conn.execute(select(func.count()).select_from(AlertFiringRecord)).scalar()
        excess = int(count or 0) - cap
        if excess <= 0:
            return []
        oldest = self.conn.execute(
            select(
                col(AlertFiringRecord.fingerprint),
                col(AlertFiringRecord.target),
                col(AlertFiringRecord.series),
            )
            .order_by(col(AlertFiringRecord.seen_at), col(AlertFiringRecord.fingerprint))
            .limit(excess)
        ).all()
        fps = [r.fingerprint for r in oldest]
        self.conn.execute(
            delete(AlertFiringRecord).where(col(AlertFiringRecord.fingerprint).in_(fps))
        )
        return [(r.fingerprint, (r.target, r.series)) for r in oldest]

    def levels(self, keys: Iterable[Key]) -> dict[Key, bool]:
        """For each (target, series): does any alert mapped there fire now?"""
        wanted = set(keys)
        if not wanted:
            return {}
        targets = sorted({t for t, _ in wanted})
        rows = self.conn.execute(
            select(col(AlertFiringRecord.target), col(AlertFiringRecord.series))
            .where(col(AlertFiringRecord.target).in_(targets))
            .distinct()
        )
        firing = {(r.target, r.series) for r in rows}
        return {key: key in firing for key in wanted}

    def keep_unmapped(self, rows: list[UnmappedRow]) -> None:
        """Keep the newest ``kept_unmapped`` (in the order given: oldest first)."""
        if not rows:
            return
        self.conn.execute(
            insert(AlertUnmappedRecord),
            [
                {
                    "received_at": _at(r.received_at),
                    "reason": r.reason,
                    "status": r.status,
                    "fingerprint": r.fingerprint,
                    "alertname": r.alertname,
                    "labels": r.labels,
                }
                for r in rows
            ],
        )
        cut = self.conn.execute(
            select(col(AlertUnmappedRecord.id))
            .order_by(col(AlertUnmappedRecord.id).desc())
            .offset(self.state.kept_unmapped)
            .limit(1)
        ).scalar()
        if cut is not None:
            self.conn.execute(delete(AlertUnmappedRecord).where(col(AlertUnmappedRecord.id) <= cut))

    def _prune_resolved(self, at: datetime) -> None:
        old = at - timedelta(seconds=self.state.resolved_for_s)
        self.conn.execute(
            delete(AlertResolvedRecord).where(col(AlertResolvedRecord.resolved_at) < old)
        )
        count = self.conn.execute(select(func.count()).select_from(AlertResolvedRecord)).scalar()
        excess = int(count or 0) - self.state.remembered
        if excess > 0:
            oldest = (
                select(col(AlertResolvedRecord.resolved_at))
                .order_by(col(AlertResolvedRecord.resolved_at))
                .offset(excess - 1)
                .limit(1)
                .scalar_subquery()
            )
            self.conn.execute(
                delete(AlertResolvedRecord).where(col(AlertResolvedRecord.resolved_at) <= oldest)
            )


class AlertState:
    """The tables of loop/db/schema.py's Alertmanager section, on ``engine``."""

    def __init__(
        self,
        engine: Engine,
        *,
        remembered: int = REMEMBERED,
        resolved_for_s: float = RESOLVED_FOR_S,
        kept_unmapped: int = KEPT_UNMAPPED,
    ) -> None:
        self.engine = engine
        self.remembered = remembered
        self.resolved_for_s = resolved_for_s
        self.kept_unmapped = kept_unmapped
        ensure_schema(engine)

    @contextmanager
    def notification(self) -> Iterator[Notification]:
        """One transaction, committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            yield Notification(conn, self)

    def firing(self) -> dict[str, list[str]]:
        """target -> the catalog series an alert fires on now."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(col(AlertFiringRecord.target), col(AlertFiringRecord.series)).distinct()
            ).all()
        out: dict[str, list[str]] = {}
        for target, series in sorted((r.target, r.series) for r in rows):
            out.setdefault(target, []).append(series)
        return out

    def unmapped(self) -> list[dict[str, Any]]:
        """The kept unmapped alerts, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(AlertUnmappedRecord)
                .order_by(col(AlertUnmappedRecord.id).desc())
                .limit(self.kept_unmapped)
            ).all()
        return [
            {
                "received_at": aware(r.received_at).timestamp(),
                "reason": r.reason,
                "status": r.status,
                "fingerprint": r.fingerprint,
                "alertname": r.alertname,
                "labels": dict(r.labels),
            }
            for r in rows
        ]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _firing_row(fp: str, firing: Firing, at: datetime) -> dict[str, Any]:
    return {
        "fingerprint": fp,
        "starts_at": firing.starts_at,
        "target": firing.target,
        "series": firing.series,
        "seen_at": at,
    }
