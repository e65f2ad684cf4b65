"""The coordinator of one worker: leases kept, targets taken over, people's actions heard.

    cluster = ClusterWorker(leases, store, walks, api_url="http://10.0.0.5:8080")
    cluster.register()                       # at start (a row in ``worker``)
    await cluster.run()                      # supervised by the engine: every ttl/3
    cluster.owns("pm-site-1")                # may this worker act on the target now?
    cluster.notify(incident_id)              # a person moved it here: its owner walks it on

Every tick (a third of the TTL) heartbeats, renews and rebalances (loop/cluster/leases.py);
a target gained is adopted (its unfinished incidents walked on from SQL, an interrupted
run reconciled through check mode as after a restart), a target lost is dropped (its walks
cancelled: the new owner walks on). ``owns`` is true only while the lease is held by this
worker's own measure: the TTL counted from the START of the last renewal on the local
monotonic clock, never later than the database's ``expires_at``.

People's actions may reach any worker: the one that took it makes the guarded SQL move,
then ``notify`` sends ``pg_notify`` on one channel with the incident id; every worker
LISTENs (a thread on its own connection), and the owner walks the incident on. A lost
notification only delays: each tick also polls the owned targets' incidents that wait for
their owner (approved, decided by a person) or that no walk drives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from sqlalchemy import text

from kernel.logsafe import safe
from kernel.state import State
from loop.cluster.fence import LeaseFence
from loop.cluster.leases import Leases, Tick
from loop.store import IncidentStore, IncidentView

log = logging.getLogger("mendloop.cluster")
CHANNEL = "mendloop_incident"
WAITING_FOR_OWNER = frozenset({State.approved, State.decided})


class Walks(Protocol):
    """What the coordinator drives of the engine (loop/daemon.py), all on its event loop."""

    def walking(self) -> set[str]: ...

    def spawn(self, incident_id: str) -> None: ...

    def drop(self, targets: frozenset[str]) -> None: ...


@dataclass
class ClusterCounts:
    ticks: int = 0
    tick_failures: int = 0
    notified: int = 0
    heard: int = 0
    polled: int = 0  # walks started by the polling fallback (a notification missed)
    adopted: int = 0  # unfinished incidents walked on after a target was gained
    listen_failures: int = 0
    last_tick: dict[str, int] = field(default_factory=dict)


class ClusterWorker:
    def __init__(
        self,
        leases: Leases,
        store: IncidentStore,
        walks: Walks,
        *,
        api_url: str,
        host: str,
        pid: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.store = store
        self.walks = walks
        self.api_url, self.host, self.pid = api_url, host, pid
        self.clock = clock
        self.ttl_s = leases.ttl_s
        self.worker_id = leases.worker_id
        self.fence = LeaseFence(self.worker_id, self.epoch_of)
        self.counts = ClusterCounts()
        self._valid_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._polled: set[tuple[str, float]] = set()
        self._seen: set[str] = set()
        self._noticed: set[asyncio.Task[None]] = set()

    # -- what the rest asks -------------------------------------------------------------

    def owns(self, target: str) -> bool:
        return target in self.leases.held and self.clock() < self._valid_until

    def epoch_of(self, target: str) -> int | None:
        return self.leases.held.get(target) if self.owns(target) else None

    def held(self) -> dict[str, int]:
        return dict(self.leases.held) if self.clock() < self._valid_until else {}

    def claim(self, target: str) -> bool:
        """A target no worker holds, seen here first: ours if under quota (then valid as
        long as the other leases, renewed with them)."""
        return self.leases.claim(target) is not None and self.owns(target)

    # -- start, ticks, stop -----------------------------------------------------------------

    def register(self) -> None:
        self.leases.register(self.host, self.pid, self.api_url)

    def start_listening(self) -> None:
        self._stop.clear()
        self._listener = threading.Thread(target=self._listen, name="mendloop-listen", daemon=True)
        self._listener.start()

    async def run(self) -> None:
        """Tick for ever (the engine supervises it: an SQL outage is retried)."""
        self._loop = asyncio.get_running_loop()
        if self._listener is None:
            self.start_listening()
        watchdog = asyncio.create_task(self._watch(), name="mendloop-lease-watchdog")
        try:
            while True:
                await self.tick_once()
                await asyncio.sleep(self.ttl_s / 3)
        finally:
            watchdog.cancel()

    async def _watch(self) -> None:
        """While renewals fail or hang (SQL out, a long pause), stop acting on targets as
        soon as the leases may have expired, before another worker may take them."""
        while True:
            self.expire_if_due()
            await asyncio.sleep(min(0.5, self.ttl_s / 10))

    def expire_if_due(self) -> frozenset[str]:
        """The leases held past their local validity: dropped (walks cancelled, their
        playbooks stopped); a later renewal that still finds them ours adopts them again."""
        if not self.leases.held or self.clock() < self._valid_until:
            return frozenset()
        expired = frozenset(self.leases.held)
        log.warning("%d lease(s) not renewed within the TTL: dropped", len(expired))
        self.leases.held = {}
        self.walks.drop(expired)
        return expired

    async def tick_once(self) -> Tick:
        started = self.clock()
        try:
            tick = await asyncio.to_thread(self.leases.tick)
        except LookupError:  # forgotten as dead (paused past 20 TTLs): join again
            await asyncio.to_thread(self.register)
            tick = await asyncio.to_thread(self.leases.tick)
        except BaseException:
            self.counts.tick_failures += 1
            raise
        self._valid_until = started + self.ttl_s
        self.counts.ticks += 1
        self.counts.last_tick = {
            "held": len(tick.held),
            "workers": tick.workers,
            "targets": tick.targets,
            "quota": tick.quota,
        }
        if tick.lost or tick.released:
            dropped = tick.lost | tick.released
            log.warning("leases gone: %d lost, %d released", len(tick.lost), len(tick.released))
            self.walks.drop(frozenset(dropped))
        if tick.gained:
            log.info("leases taken: %s", ", ".join(safe(t) for t in sorted(tick.gained)[:20]))
        await self._poll(tick.gained)
        return tick

    async def _poll(self, gained: frozenset[str]) -> None:
        """Walk on what waits for this owner: incidents of gained targets (a takeover),
        never-walked ones, and people's moves whose notification was missed."""
        held = self.held()
        if not held:
            return
        incidents = await asyncio.to_thread(self.store.unfinished)
        walking = self.walks.walking()
        self._seen |= walking
        for incident in incidents:
            if incident.target not in held or incident.id in walking:
                continue
            if incident.target in gained or incident.id not in self._seen:
                self.counts.adopted += 1
                self._spawn(incident)
            elif incident.state in WAITING_FOR_OWNER and self._fresh(incident):
                self.counts.polled += 1
                self._spawn(incident)

    def _fresh(self, incident: IncidentView) -> bool:
        mark = (incident.id, incident.updated_at.timestamp())
        if mark in self._polled:
            return False
        self._polled.add(mark)
        return True

    def _spawn(self, incident: IncidentView) -> None:
        self._seen.add(incident.id)
        self._polled.add((incident.id, incident.updated_at.timestamp()))
        self.walks.spawn(incident.id)

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(5)
            self._listener = None

    def leave(self) -> None:
        """A clean stop: the leases freed at once for the others."""
        self.leases.leave()
        self._valid_until = 0.0

    # -- notifications ---------------------------------------------------------------------

    def notify(self, incident_id: str) -> None:
        """Tell every worker a person moved this incident (its owner walks it on)."""
        with self.leases.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": incident_id})
        self.counts.notified += 1

    def _dsn(self) -> str:
        url = self.leases.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _listen(self) -> None:
        """LISTEN on its own connection; reconnects after a failure (counted)."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload)
            except psycopg.Error as exc:
                self.counts.listen_failures += 1
                log.warning("LISTEN failed (%s); the polling fallback covers it", exc)
                self._stop.wait(2.0)

    def _heard(self, incident_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self.counts.heard += 1
        loop.call_soon_threadsafe(self._on_notice, incident_id)

    def _on_notice(self, incident_id: str) -> None:
        task = asyncio.ensure_future(self._walk_noticed(incident_id))
        self._noticed.add(task)
        task.add_done_callback(self._noticed.discard)

    async def _walk_noticed(self, incident_id: str) -> None:
        try:
            incident = await asyncio.to_thread(self.store.get, incident_id)
        except Exception:  # SQL out: the polling fallback walks it later
            log.warning("incident %s noticed but not read", safe(incident_id), exc_info=True)
            return
        if incident is None or incident.terminal or not self.owns(incident.target):
            return
        if incident.id not in self.walks.walking():
            self._spawn(incident)
