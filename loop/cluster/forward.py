"""Pushed samples reach their target's owner: taken here, forwarded, or refused (counted).

    intake = ClusterIntake(cluster, engine.submit, key=leases.cluster_key())
    app = create_app(..., submit=intake.submit)   # every push endpoint goes through it
    intake.counts                                  # local / forwarded / claimed / refused

A push is split by target. Samples of targets this worker owns go to the local engine;
a target nobody knows yet is claimed here when under quota; samples of a target another
worker owns are forwarded to that worker (``POST /v1/cluster/samples`` on its API, signed
with the cluster key kept in SQL, the pushing token's id carried along for its limits).
A forward that fails (owner down, lease moved, timeout) and a target with no live owner
yet are refused to the sender with ``ForwardRefused`` (503 + Retry-After, the owner's URL
when known), after what was taken locally: the sender retries the whole push and the
samples already kept count as duplicates. Every sample is accounted for: taken,
forwarded, or refused to the sender; none is dropped without the sender being told.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from kernel.errors import MendloopError
from kernel.ids import is_identifier
from kernel.models import Sample
from loop.cluster.leases import Leases, Owner
from loop.intake import IngestResult, Rejection

log = logging.getLogger("mendloop.cluster")
SIGNATURE = "X-Mendloop-Cluster"
PATH = "/v1/cluster/samples"


class ForwardRefused(MendloopError):
    """Samples this worker could neither take nor hand to their owner: retry later."""

    def __init__(self, message: str, retry_after_s: float, owner_url: str = "") -> None:
        self.retry_after_s = retry_after_s
        self.owner_url = owner_url
        super().__init__(message)


class Submit(Protocol):
    """How a push reaches the monitor (``Engine.submit``, ``Monitor.ingest``): ``owner`` is
    the pushing token (its own cardinality limits), ``refused`` the points its parser
    refused already (booked with the push, by reason)."""

    def __call__(
        self,
        batch: Iterable[Any],
        *,
        owner: str | None = None,
        refused: Mapping[str, int] | None = None,
    ) -> IngestResult: ...


class Ownership(Protocol):
    leases: Leases
    worker_id: str

    def owns(self, target: str) -> bool: ...

    def claim(self, target: str) -> bool: ...


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def target_of(item: Any) -> str | None:
    """The target a pushed sample names, when it is a valid identifier (else None: the
    local monitor refuses it with its reason, as on one worker)."""
    if isinstance(item, Sample):
        target: Any = item.target
    elif isinstance(item, Mapping) and isinstance(labels := item.get("labels"), Mapping):
        target = labels.get("target")
    else:
        return None
    return target if isinstance(target, str) and is_identifier(target) else None


def wire(item: Any) -> Any:
    return item.model_dump(mode="json") if isinstance(item, Sample) else item


@dataclass
class Routes:
    """Targets of a push that this worker does not own, by where their samples go."""

    peers: dict[str, Owner] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    orphans: set[str] = field(default_factory=set)


class ClusterIntake:
    def __init__(
        self,
        cluster: Ownership,
        submit: Submit,
        key: bytes,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.cluster = cluster
        self.local = submit
        self.key = key
        self.retry_after_s = max(1.0, cluster.leases.ttl_s / 3)
        self.client = client or httpx.Client(timeout=timeout_s)
        self.counts: Counter[str] = Counter()  # samples: local, forwarded, claimed, refused
        self._lock = threading.Lock()

    def count(self, **counts: int) -> None:
        """Samples by outcome (local, forwarded, claimed, refused), whatever their protocol."""
        with self._lock:
            self.counts.update(counts)

    def route(self, targets: Iterable[str]) -> Routes:
        """Where the samples of these targets (none owned here by our own measure) go: to
        their live owner, claimed here (a target nobody holds, we are under quota), or
        nowhere yet (refused to the sender)."""
        theirs = sorted(set(targets))
        owners = self.cluster.leases.owners(theirs) if theirs else {}
        routes = Routes()
        for target in theirs:
            found = owners.get(target)
            if found is not None and found.worker_id == self.cluster.worker_id:
                found = None  # ours in SQL but not by our own measure: renewing
            if found is not None:
                routes.peers[target] = found
            elif self.cluster.claim(target):
                routes.claimed.add(target)
            else:
                routes.orphans.add(target)
        return routes

    def refuse(self, orphans: int, failed: list[tuple[int, str]]) -> None:
        """Raise ``ForwardRefused`` (503) for samples neither taken nor handed over, if any:
        ``orphans`` of targets with no live owner, ``failed`` (samples, owner url) forwards."""
        if not orphans and not failed:
            return
        lost_count = orphans + sum(n for n, _ in failed)
        self.count(refused=lost_count)
        raise ForwardRefused(
            f"{lost_count} sample(s) of targets owned by another worker could not be "
            "handed over now (owner unreachable or no live owner yet); retry the push",
            self.retry_after_s,
            failed[0][1] if failed else "",
        )

    def submit(
        self,
        batch: Iterable[Any],
        *,
        owner: str | None = None,
        refused: Mapping[str, int] | None = None,
    ) -> IngestResult:
        items = batch if isinstance(batch, Sequence) else list(batch)
        mine: list[int] = []
        theirs: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            target = target_of(item)
            if target is None or self.cluster.owns(target):
                mine.append(index)
            else:
                theirs[target].append(index)
        routes = self.route(theirs)
        by_owner: dict[Owner, list[int]] = defaultdict(list)
        orphans = 0
        for target, indices in theirs.items():
            if target in routes.peers:
                by_owner[routes.peers[target]] += indices
            elif target in routes.claimed:
                self.count(claimed=len(indices))
                mine += indices
            else:
                orphans += len(indices)
        result = self._local(items, sorted(mine), owner, refused)
        failed: list[tuple[int, str]] = []  # (samples, owner url)
        for peer, indices in by_owner.items():
            try:
                result = merge(result, self._forward(peer, items, indices, owner), indices)
                self.count(forwarded=len(indices))
            except (httpx.HTTPError, ForwardRefused, ValueError) as exc:
                log.warning(
                    "forward of %d sample(s) to %s failed: %s", len(indices), peer.api_url, exc
                )
                failed.append((len(indices), peer.api_url))
        self.refuse(orphans, failed)
        return result

    def _local(
        self,
        items: Sequence[Any],
        indices: list[int],
        owner: str | None,
        refused: Mapping[str, int] | None,
    ) -> IngestResult:
        if len(indices) == len(items):
            self.count(local=len(items))
            return self.local(items, owner=owner, refused=refused)
        result = self.local([items[i] for i in indices], owner=owner, refused=refused)
        self.count(local=len(indices))
        return IngestResult(
            accepted=result.accepted,
            late=result.late,
            duplicate=result.duplicate,
            rejected=tuple(
                Rejection(
                    indices[r.index] if 0 <= r.index < len(indices) else -1, r.error, r.reason
                )
                for r in result.rejected
            ),
            latest=result.latest,
        )

    def _forward(
        self, peer: Owner, items: Sequence[Any], indices: list[int], owner: str | None
    ) -> IngestResult:
        body = json.dumps(
            {
                "from": self.cluster.worker_id,
                "owner": owner,
                "samples": [wire(items[i]) for i in indices],
            },
            separators=(",", ":"),
        ).encode()
        answer = self.client.post(
            peer.api_url.rstrip("/") + PATH,
            content=body,
            headers={"Content-Type": "application/json", SIGNATURE: sign(self.key, body)},
        )
        if answer.status_code != 200:
            raise ForwardRefused(
                f"owner answered {answer.status_code}: {answer.text[:200]}", self.retry_after_s
            )
        data = answer.json()
        return IngestResult(
            accepted=int(data["accepted"]),
            late=int(data.get("late", 0)),
            duplicate=int(data.get("duplicate", 0)),
            rejected=tuple(
                Rejection(int(r["index"]), str(r["error"]), str(r.get("reason", "invalid")))
                for r in data.get("rejected", [])
            ),
        )


def merge(result: IngestResult, more: IngestResult, indices: list[int]) -> IngestResult:
    """``more`` (of the samples at ``indices``) added to ``result``, indices mapped back."""
    return IngestResult(
        accepted=result.accepted + more.accepted,
        late=result.late + more.late,
        duplicate=result.duplicate + more.duplicate,
        rejected=result.rejected + remap(more.rejected, indices),
        latest=result.latest,
    )


def remap(rejected: tuple[Rejection, ...], indices: list[int]) -> tuple[Rejection, ...]:
    """Rejections of a part of a push, their indices back in the whole push's."""
    return tuple(
        Rejection(indices[r.index] if 0 <= r.index < len(indices) else -1, r.error, r.reason)
        for r in rejected
    )
