"""The SQL of workers and target leases (PostgreSQL), in short transactions.

    leases = Leases(engine, worker_id, ttl_s=15)
    leases.register(host, pid, api_url)
    tick = leases.tick()          # heartbeat, renew, rebalance: what is held now, gained, lost
    leases.claim("pm-site-9")     # a target nobody has seen yet, taken by the receiving worker
    leases.owners(["pm-site-2"])  # who owns these now, and where their API is

Every time is the database's ``now()``: a worker's wall clock is never compared with
another's. A lease is valid while ``expires_at > now()``; its owner renews it at every
tick (every ttl/3). Each worker aims at ``ceil(T / N)`` targets (T known targets, N live
workers): under quota it takes free or expired leases (``FOR UPDATE SKIP LOCKED``: two
workers never wait on, nor take, the same row), over quota it releases leases whose
target has no incident in flight (never in the middle of a playbook). A taken lease's
``epoch`` grows by one: the fence of every write that matters (loop/cluster/fence.py).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

from sqlalchemy import Engine, bindparam, text

from kernel.state import TERMINAL

_TERMINAL = tuple(sorted(s.value for s in TERMINAL))


@dataclass(frozen=True)
class Tick:
    held: dict[str, int]  # target -> epoch, after this tick
    gained: frozenset[str]
    lost: frozenset[str]
    released: frozenset[str]
    workers: int  # live workers (this one included)
    targets: int  # known targets
    quota: int


@dataclass(frozen=True)
class Owner:
    worker_id: str
    api_url: str


@dataclass
class LeaseCounts:
    taken: int = 0
    released: int = 0
    lost: int = 0
    claimed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def quota(targets: int, workers: int) -> int:
    """Targets one worker should hold: ceil(T / N) (N >= 1)."""
    return math.ceil(targets / max(workers, 1))


RENEW = text(
    "UPDATE target_lease SET expires_at = now() + make_interval(secs => :ttl) "
    "WHERE worker_id = :me AND expires_at > now() RETURNING target, epoch"
)
HEARTBEAT = text("UPDATE worker SET heartbeat_at = now() WHERE id = :me")
COUNTS = text(
    "SELECT (SELECT count(*) FROM worker "
    "        WHERE heartbeat_at > now() - make_interval(secs => :ttl)), "
    "       (SELECT count(*) FROM target_lease)"
)
TAKE = text(
    "WITH free AS (SELECT target FROM target_lease "
    "  WHERE worker_id IS NULL OR expires_at <= now() "
    "  ORDER BY expires_at, target LIMIT :n FOR UPDATE SKIP LOCKED) "
    "UPDATE target_lease l SET worker_id = :me, epoch = l.epoch + 1, "
    "  expires_at = now() + make_interval(secs => :ttl) "
    "FROM free WHERE l.target = free.target RETURNING l.target, l.epoch"
)
TAKE_ONE = text(
    "UPDATE target_lease SET worker_id = :me, epoch = epoch + 1, "
    "  expires_at = now() + make_interval(secs => :ttl) "
    "WHERE target = :target AND (worker_id IS NULL OR expires_at <= now()) RETURNING epoch"
)
RELEASE = text(
    "WITH idle AS (SELECT l.target FROM target_lease l WHERE l.worker_id = :me "
    "  AND l.expires_at > now() AND NOT EXISTS (SELECT 1 FROM incident i "
    "    WHERE i.target = l.target AND i.state NOT IN :terminal) "
    "  ORDER BY l.target LIMIT :n FOR UPDATE SKIP LOCKED) "
    "UPDATE target_lease l SET worker_id = NULL, expires_at = now() "
    "FROM idle WHERE l.target = idle.target RETURNING l.target"
).bindparams(bindparam("terminal", expanding=True))
CLAIM = text(
    "INSERT INTO target_lease (target, worker_id, expires_at, epoch) "
    "VALUES (:target, :me, now() + make_interval(secs => :ttl), 1) "
    "ON CONFLICT (target) DO NOTHING RETURNING epoch"
)
KNOW = text(
    "INSERT INTO target_lease (target, worker_id, expires_at, epoch) "
    "VALUES (:target, NULL, now(), 0) ON CONFLICT (target) DO NOTHING"
)
OWNERS = text(
    "SELECT l.target, l.worker_id, w.api_url FROM target_lease l "
    "JOIN worker w ON w.id = l.worker_id "
    "WHERE l.target IN :targets AND l.expires_at > now()"
).bindparams(bindparam("targets", expanding=True))
FORGET_DEAD = text(
    "DELETE FROM worker WHERE id <> :me AND heartbeat_at < now() - make_interval(secs => :old)"
)


class Leases:
    def __init__(self, engine: Engine, worker_id: str, ttl_s: float = 15.0) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("leases need PostgreSQL (SQLite runs one worker)")
        self.engine = engine
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self.held: dict[str, int] = {}
        self.workers = 1
        self.targets = 0
        self.counts = LeaseCounts()

    def _args(self, **more: object) -> dict[str, object]:
        return {"me": self.worker_id, "ttl": self.ttl_s, **more}

    def register(self, host: str, pid: int, api_url: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO worker (id, host, pid, started_at, heartbeat_at, api_url) "
                    "VALUES (:me, :host, :pid, now(), now(), :url) ON CONFLICT (id) DO UPDATE "
                    "SET heartbeat_at = now(), api_url = :url"
                ),
                self._args(host=host, pid=pid, url=api_url),
            )

    def leave(self) -> None:
        """A clean stop: leases freed now (not after the TTL), the worker row gone."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE target_lease SET worker_id = NULL, expires_at = now() "
                    "WHERE worker_id = :me"
                ),
                self._args(),
            )
            conn.execute(text("DELETE FROM worker WHERE id = :me"), self._args())
        self.held = {}

    def tick(self) -> Tick:
        """Heartbeat and renewal, then take or release towards the quota."""
        before = dict(self.held)
        with self.engine.begin() as conn:
            if conn.execute(HEARTBEAT, self._args()).rowcount == 0:
                raise LookupError(f"worker {self.worker_id} is not registered (forgotten?)")
            held = {r.target: r.epoch for r in conn.execute(RENEW, self._args())}
        with self.engine.begin() as conn:
            workers, targets = conn.execute(COUNTS, self._args()).one()
            conn.execute(FORGET_DEAD, self._args(old=self.ttl_s * 20))
        want = quota(int(targets), int(workers))
        released: set[str] = set()
        if len(held) < want:
            with self.engine.begin() as conn:
                rows = conn.execute(TAKE, self._args(n=want - len(held))).all()
            held.update({r.target: r.epoch for r in rows})
            self.counts.taken += len(rows)
        elif len(held) > want:
            with self.engine.begin() as conn:  # those with no incident in flight
                rows = conn.execute(
                    RELEASE, self._args(n=len(held) - want, terminal=_TERMINAL)
                ).all()
            released = {r.target for r in rows}
            for target in released:
                held.pop(target, None)
            self.counts.released += len(released)
        lost = {t for t in before if before[t] != held.get(t)} - released
        self.counts.lost += len(lost)
        self.held, self.workers, self.targets = held, int(workers), int(targets)
        return Tick(
            held=dict(held),
            gained=frozenset(t for t in held if before.get(t) != held[t]),
            lost=frozenset(lost),
            released=frozenset(released),
            workers=int(workers),
            targets=int(targets),
            quota=want,
        )

    def under_quota(self, extra: int = 1) -> bool:
        return len(self.held) < quota(self.targets + extra, self.workers)

    def claim(self, target: str) -> int | None:
        """A target seen for the first time: ours (its epoch) when under quota, else made
        known without an owner (a worker under quota takes it at its next tick); None when
        it is not ours. A known target without a live owner is taken the same way."""
        with self.engine.begin() as conn:
            epoch = None
            if self.under_quota(extra=1):  # counted as a new target
                epoch = conn.execute(CLAIM, self._args(target=target)).scalar()
                if epoch is not None:
                    self.targets += 1
            if epoch is None and self.under_quota(extra=0):  # known, its owner gone
                epoch = conn.execute(TAKE_ONE, self._args(target=target)).scalar()
            if epoch is None:
                conn.execute(KNOW, self._args(target=target))
                return None
        self.held[target] = int(epoch)
        self.counts.claimed += 1
        return int(epoch)

    def owners(self, targets: list[str]) -> dict[str, Owner]:
        """The live owner of each of these targets (a target missing: no live owner)."""
        if not targets:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(OWNERS, {"targets": targets}).all()
        return {r.target: Owner(r.worker_id, r.api_url) for r in rows}

    def cluster_key(self) -> bytes:
        """The key forwarded samples are signed with: made once, by the first worker."""
        with self.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO cluster_key (id, key) VALUES (1, :key) ON CONFLICT DO NOTHING"),
                {"key": secrets.token_hex(32)},
            )
            key = conn.execute(text("SELECT key FROM cluster_key WHERE id = 1")).scalar_one()
        return bytes.fromhex(key)
