"""One worker among several on one PostgreSQL: what `mendloop run` adds (loop/cluster/).

    lock = single_worker(settings.database_url)   # SQLite: a second worker is refused
    joined = join_cluster(engine, settings)       # PostgreSQL: leases, fencing, forwarding
    app = app_for(engine, submit=joined.intake.submit, remote_write=joined.writes, ...)
    joined.install(app); ...; joined.leave()

On PostgreSQL every `mendloop run` is a worker: it registers, takes its share of the
targets' leases, fences the loop's writes with them, forwards pushed samples of targets
it does not own to their owner, shares the chat replay guard and the stream tickets in
SQL, pulls from Prometheus only its own targets, and frees its leases on a clean stop.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI

from api.cluster import install_cluster
from api.events import SharedStreamTickets
from kernel.config import Settings
from loop.cluster.forward import ClusterIntake
from loop.cluster.guards import SqlReplayGuard, TicketTable
from loop.cluster.leases import Leases
from loop.cluster.remote_write import ClusterRemoteWrite, ForwardedWrites, FrameDecoder
from loop.cluster.single import WorkerLock, single_worker
from loop.cluster.worker import ClusterWorker
from loop.daemon import Engine
from loop.sources.remote_write_intake import RemoteWriteReceiver

log = logging.getLogger("mendloop")

__all__ = ["Joined", "WorkerLock", "join_cluster", "single_worker"]


@dataclass
class Joined:
    cluster: ClusterWorker
    intake: ClusterIntake
    key: bytes
    engine: Engine
    writes: ClusterRemoteWrite  # remote-write pushed here, split by owner
    forwarded: ForwardedWrites  # remote-write a peer forwarded here

    def install(self, app: FastAPI) -> None:
        install_cluster(
            app, self.engine.submit, self.cluster.owns, self.key, self.status, self.forwarded
        )

    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.cluster.worker_id,
            "api_url": self.cluster.api_url,
            "held": sorted(self.cluster.held()),
            "intake": dict(self.intake.counts),
            "remote_write_forwarded_in": self.forwarded.receiver.counters(),
            "cluster": asdict(self.cluster.counts),
            "leases": asdict(self.cluster.leases.counts),
            "fence_refused": self.cluster.fence.refused,
        }

    def tickets(self) -> SharedStreamTickets:
        return SharedStreamTickets(TicketTable(self.engine.store.engine))

    def replay_guard(self) -> SqlReplayGuard:
        return SqlReplayGuard(self.engine.store.engine)

    def leave(self) -> None:
        self.cluster.stop()
        try:
            self.cluster.leave()
        except Exception:  # SQL out at shutdown: the leases expire after the TTL instead
            log.warning("leases not freed at stop; they expire after the TTL", exc_info=True)


def worker_id() -> str:
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def join_cluster(engine: Engine, settings: Settings) -> Joined | None:
    """Join the workers of this PostgreSQL (None on SQLite: one worker, nothing to join)."""
    sql = engine.store.engine
    if sql.dialect.name != "postgresql":
        return None
    url = settings.worker_url or f"http://{settings.api_host}:{settings.api_port}"
    leases = Leases(sql, worker_id(), settings.worker_lease_ttl_s)
    cluster = ClusterWorker(
        leases, engine.store, engine, api_url=url, host=socket.gethostname(), pid=os.getpid()
    )
    cluster.register()
    engine.join(cluster)
    key = leases.cluster_key()
    intake = ClusterIntake(cluster, engine.submit, key)
    writes = ClusterRemoteWrite(intake, RemoteWriteReceiver(engine.monitor, took=engine.took))
    forwarded = ForwardedWrites(
        RemoteWriteReceiver(engine.monitor, decoder=FrameDecoder(), took=engine.took)
    )
    log.info("worker %s joined (lease TTL %.0f s, API %s)", leases.worker_id, leases.ttl_s, url)
    return Joined(cluster, intake, key, engine, writes, forwarded)
