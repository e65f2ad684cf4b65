"""Remote-write with several workers: a decoded request split by its targets' owners.

    writes = ClusterRemoteWrite(intake, RemoteWriteReceiver(monitor, took=engine.took))
    writes.receive(body, owner=token_id)   # what POST /api/v1/write calls, as on one worker
    peer = ForwardedWrites(RemoteWriteReceiver(monitor, decoder=FrameDecoder(), took=...))
    peer.take(frame, owns)                 # POST /v1/cluster/write: a peer's forward

The request is decoded once, by the worker that received it. Its label sets are mapped to
their target (cached by label set); the samples of targets this worker owns (or claims:
nobody holds them and it is under quota) are taken by its own receiver, the samples of a
target another worker owns are forwarded to that worker as a **frame**: the label sets'
canonical blobs and the samples' columns as raw little-endian arrays, signed with the
cluster key (``ClusterIntake``'s key and counters: one account of samples per worker,
whatever the protocol). Re-encoding protobuf + snappy would cost the sender more than the
decode it saves; the owner caches its work per label set of the frames as it does per
label set of remote-write bodies (``FrameDecoder``'s slots), so a forwarded sample costs
it what a direct one does.

A forward that fails and a target with no live owner yet make the request answer 503 +
Retry-After (``ForwardRefused``) after the rest was taken. Prometheus then resends the
whole request: what was already taken here or by a peer is dropped there as *duplicate*
(same series, same timestamp: the windows keep the first; older points of the same
request as *late*), counted, never written twice; the rest is taken. So a retry is
idempotent, and nothing is lost without the sender being told.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from kernel.ids import is_identifier
from loop.cluster.forward import SIGNATURE, ClusterIntake, ForwardRefused, sign
from loop.cluster.leases import Owner
from loop.sources.base import resolve_target
from loop.sources.remote_write import (
    DEFAULT_CACHE_SIZE,
    STALE_NAN_BITS,
    RefusalReason,
    RemoteWriteBatch,
    RemoteWriteCounts,
    RemoteWriteError,
    parse_label_blob,
)
from loop.sources.remote_write_intake import RemoteWriteOutcome, RemoteWriteReceiver

log = logging.getLogger("mendloop.cluster")
WRITE_PATH = "/v1/cluster/write"
MAGIC = b"MLRW1"
HEAD = struct.Struct("<5sI")  # magic, header length


@dataclass(frozen=True)
class FrameHeader:
    sender: str  # the forwarding worker's id
    owner: str | None  # the pushing token's id: its own cardinality limits at the owner
    targets: tuple[str, ...]  # the targets of the frame's samples (the owner checks them)


def encode_frame(
    header: FrameHeader,
    keys: Sequence[bytes],
    series: NDArray[np.int32],
    timestamps_ms: NDArray[np.int64],
    values: NDArray[np.float64],
) -> bytes:
    """Label sets (canonical blobs) and sample columns, as one body for the owner."""
    meta = json.dumps(
        {
            "from": header.sender,
            "owner": header.owner,
            "targets": list(header.targets),
            "rows": len(keys),
            "samples": len(values),
        },
        separators=(",", ":"),
    ).encode()
    lengths = np.fromiter((len(k) for k in keys), dtype="<u4", count=len(keys))
    return b"".join(
        (
            HEAD.pack(MAGIC, len(meta)),
            meta,
            lengths.tobytes(),
            *keys,
            series.astype("<i4", copy=False).tobytes(),
            timestamps_ms.astype("<i8", copy=False).tobytes(),
            values.astype("<f8", copy=False).tobytes(),
        )
    )


@dataclass(frozen=True)
class Frame:
    header: FrameHeader
    keys: tuple[bytes, ...]
    series: NDArray[np.int32]
    timestamps_ms: NDArray[np.int64]
    values: NDArray[np.float64]


def _bad(message: str) -> RemoteWriteError:
    # frames come from a peer that signed them: a bad one is our bug, not a sender's
    return RemoteWriteError(f"bad forward frame: {message}", RefusalReason.INTERNAL)


def read_header(body: bytes) -> tuple[FrameHeader, dict[str, Any], int]:
    """The frame's header, its raw fields and where its arrays start."""
    if len(body) < HEAD.size:
        raise _bad("too short")
    magic, size = HEAD.unpack_from(body)
    if magic != MAGIC or HEAD.size + size > len(body):
        raise _bad("not a frame")
    try:
        meta = json.loads(body[HEAD.size : HEAD.size + size])
        header = FrameHeader(
            str(meta["from"]),
            None if meta["owner"] is None else str(meta["owner"]),
            tuple(str(t) for t in meta["targets"]),
        )
        rows, samples = int(meta["rows"]), int(meta["samples"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad(f"header: {exc}") from exc
    if rows < 0 or samples < 0:
        raise _bad("negative sizes")
    return header, {"rows": rows, "samples": samples}, HEAD.size + size


def read_frame(body: bytes) -> Frame:
    header, sizes, at = read_header(body)
    rows, samples = sizes["rows"], sizes["samples"]
    if at + 4 * rows > len(body):
        raise _bad("truncated")
    lengths = np.frombuffer(body, dtype="<u4", count=rows, offset=at).astype(np.int64)
    at += 4 * rows
    ends = at + np.cumsum(lengths)
    if at + int(lengths.sum()) + 20 * samples != len(body):
        raise _bad("sizes do not add up")
    starts = np.concatenate(([at], ends[:-1])).tolist() if rows else []
    keys = tuple(body[s:e] for s, e in zip(starts, ends.tolist(), strict=True))
    at = int(ends[-1]) if rows else at
    series = np.frombuffer(body, dtype="<i4", count=samples, offset=at)
    timestamps = np.frombuffer(body, dtype="<i8", count=samples, offset=at + 4 * samples)
    values = np.frombuffer(body, dtype="<f8", count=samples, offset=at + 12 * samples)
    if samples and (int(series.min()) < 0 or int(series.max()) >= rows):
        raise _bad("a sample names no label set")
    return Frame(header, keys, series.astype(np.int32), timestamps.astype(np.int64), values)


class FrameDecoder:
    """Frames -> ``RemoteWriteBatch`` with slots of its own (one per label set while it is
    cached), so the owner's receiver resolves a forwarded label set once, as it does a
    direct one. A full cache is emptied at once (every slot it then fills is refilled)."""

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._size = cache_size
        self._slots: dict[bytes, int] = {}
        self._parsed: list[Any] = [None] * cache_size
        self._lock = threading.Lock()

    @property
    def cache_size(self) -> int:
        return self._size

    def decode(self, body: bytes) -> RemoteWriteBatch:
        frame = read_frame(body)
        if len(frame.keys) > self._size:
            raise RemoteWriteError("more label sets than the cache holds", RefusalReason.TOO_LARGE)
        with self._lock:
            fresh = sum(1 for key in frame.keys if key not in self._slots)
            if len(self._slots) + fresh > self._size:
                self._slots.clear()
            refilled: list[int] = []
            slots = []
            for key in frame.keys:
                slot = self._slots.get(key)
                if slot is None:
                    try:
                        parsed = parse_label_blob(key)
                    except ValueError as exc:
                        raise _bad(f"label set: {exc}") from exc
                    slot = self._slots[key] = len(self._slots)
                    self._parsed[slot] = parsed
                    refilled.append(slot)
                slots.append(slot)
            label_sets = tuple(self._parsed[s] for s in slots)
        stale = int(np.count_nonzero(frame.values.view(np.uint64) == np.uint64(STALE_NAN_BITS)))
        counts = RemoteWriteCounts(
            timeseries=len(frame.keys),
            samples=len(frame.values),
            label_sets=len(frame.keys),
            series_without_samples=0,
            histograms_skipped=0,
            exemplars_skipped=0,
            metadata_skipped=0,
            out_of_order=0,  # counted by the worker that received the request
            duplicate_timestamps=0,
            stale_markers=stale,
            nan_values=int(np.count_nonzero(np.isnan(frame.values))) - stale,
        )
        cache_slots = np.asarray(slots, dtype=np.int64)
        return RemoteWriteBatch(
            frame.keys,
            label_sets,
            frame.series,
            frame.timestamps_ms,
            frame.values,
            counts,
            cache_slots,
            tuple(refilled),
        )


def subset(batch: RemoteWriteBatch, rows: NDArray[np.intp]) -> RemoteWriteBatch:
    """The part of a decoded request whose label sets are ``rows`` (its samples only)."""
    keep = np.zeros(len(batch.keys), dtype=bool)
    keep[rows] = True
    take = keep[batch.series]
    renumber = np.full(len(batch.keys), -1, dtype=np.int32)
    renumber[rows] = np.arange(len(rows), dtype=np.int32)
    picked = rows.tolist()
    values = batch.values[take]
    return RemoteWriteBatch(
        tuple(batch.keys[r] for r in picked),
        tuple(batch.label_sets[r] for r in picked),
        renumber[batch.series[take]],
        batch.timestamps_ms[take],
        values,
        replace(batch.counts, samples=len(values), label_sets=len(picked)),
        batch.cache_slots[rows] if batch.cache_slots is not None else None,
        batch.refilled,  # every slot refilled, kept or not: the receiver forgets them all
    )


class ClusterRemoteWrite:
    """The remote-write route's receiver on a worker of several (same ``receive`` and
    ``counters`` as ``RemoteWriteReceiver``); raises ``ForwardRefused`` (503)."""

    def __init__(self, intake: ClusterIntake, receiver: RemoteWriteReceiver) -> None:
        self.intake = intake
        self.receiver = receiver
        self._targets: dict[bytes, str | None] = {}  # label set -> its target
        self._lock = threading.Lock()

    def counters(self) -> dict[str, int]:
        return self.receiver.counters()

    def receive(self, body: bytes, owner: str | None = None) -> RemoteWriteOutcome:
        batch = self.receiver.decode(body)
        targets = self._target_of(batch)
        owns = self.intake.cluster.owns
        mine = {t: t is None or owns(t) for t in set(targets)}
        if all(mine.values()):
            self.intake.count(local=len(batch.values))
            return self.receiver.ingest(batch, owner)
        routes = self.intake.route(t for t, ours in mine.items() if not ours and t is not None)
        peers = sorted(set(routes.peers.values()), key=lambda p: p.worker_id)
        number = {peer: n for n, peer in enumerate(peers, start=1)}
        where = {t: 0 if ours or t in routes.claimed else -1 for t, ours in mine.items()}
        where |= {t: number[p] for t, p in routes.peers.items()}
        dest = np.fromiter((where[t] for t in targets), dtype=np.int64, count=len(targets))
        per_dest = np.bincount(dest[batch.series] + 1, minlength=len(peers) + 2)
        claimed = [r for r, t in enumerate(targets) if t in routes.claimed]
        if claimed:
            in_claimed = np.isin(batch.series, np.asarray(claimed))
            self.intake.count(claimed=int(np.count_nonzero(in_claimed)))
        outcome = self.receiver.ingest(subset(batch, np.flatnonzero(dest == 0)), owner)
        self.intake.count(local=int(per_dest[1]))
        failed: list[tuple[int, str]] = []
        for peer, n in number.items():
            rows = np.flatnonzero(dest == n)
            part = subset(batch, rows)
            names = tuple(sorted({t for t in (targets[r] for r in rows.tolist()) if t}))
            header = FrameHeader(self.intake.cluster.worker_id, owner, names)
            try:
                taken = self._forward(peer, part, header)
            except (httpx.HTTPError, ForwardRefused, ValueError) as exc:
                log.warning("remote-write forward of %d sample(s) to %s failed: %s",
                            len(part.values), peer.api_url, exc)  # fmt: skip
                failed.append((len(part.values), peer.api_url))
                continue
            self.intake.count(forwarded=len(part.values))
            outcome.accepted += taken.accepted
            outcome.late += taken.late
            outcome.duplicate += taken.duplicate
            outcome.refused.update(taken.refused)
        outcome.samples = len(batch.values)
        self.intake.refuse(int(per_dest[0]), failed)
        return outcome

    def _target_of(self, batch: RemoteWriteBatch) -> list[str | None]:
        """Per label set, its target (None: none or not an identifier; the local receiver
        refuses those with their reason, as on one worker)."""
        labels = self.receiver.target_labels
        out: list[str | None] = []
        with self._lock:
            if len(self._targets) > DEFAULT_CACHE_SIZE:
                self._targets.clear()
            for key, label_set in zip(batch.keys, batch.label_sets, strict=True):
                if key not in self._targets:
                    target = resolve_target(label_set, labels)
                    ok = target is not None and is_identifier(target)
                    self._targets[key] = target if ok else None
                out.append(self._targets[key])
        return out

    def _forward(
        self, peer: Owner, part: RemoteWriteBatch, header: FrameHeader
    ) -> RemoteWriteOutcome:
        body = encode_frame(header, part.keys, part.series, part.timestamps_ms, part.values)
        answer = self.intake.client.post(
            peer.api_url.rstrip("/") + WRITE_PATH,
            content=body,
            headers={
                "Content-Type": "application/octet-stream",
                SIGNATURE: sign(self.intake.key, body),
            },
        )
        if answer.status_code != 200:
            raise ForwardRefused(
                f"owner answered {answer.status_code}: {answer.text[:200]}",
                self.intake.retry_after_s,
            )
        data = answer.json()
        return RemoteWriteOutcome(
            samples=int(data["samples"]),
            accepted=int(data["accepted"]),
            late=int(data["late"]),
            duplicate=int(data["duplicate"]),
            refused=Counter({str(k): int(v) for k, v in data["refused"].items()}),
        )


class ForwardedWrites:
    """The owner's side: frames a peer forwarded, taken when every target in them is this
    worker's (else the targets it does not own: the peer refuses them to its sender)."""

    def __init__(self, receiver: RemoteWriteReceiver) -> None:
        self.receiver = receiver

    def take(self, body: bytes, owns: Callable[[str], bool]) -> RemoteWriteOutcome | list[str]:
        header, _, _ = read_header(body)
        strangers = sorted(t for t in header.targets if not owns(t))
        if strangers:
            return strangers
        return self.receiver.receive(body, header.owner)
