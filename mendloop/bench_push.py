"""The pusher of `mendloop bench scale`: the twin's samples of T targets every second,
as Prometheus remote-write (default) or JSON, round-robin over the workers (a batch of
targets goes to the next worker each second, as a sender that does not know the owners),
``shards`` requests in flight at once (Prometheus' remote-write runs parallel shards; one
at a time would measure the sum of the requests' latencies, not what the workers take).

    pusher = Pusher(targets, apis, protocol="remote-write")
    pusher.start(); ...; pusher.stop(); pusher.counts   # sent, accepted, ..., lost

A remote-write request is built from a template per batch of targets (``Template``): the
label sets never change, so each request only writes its values and its timestamp into a
copy of the template's bytes (numpy) and snappy-compresses it, ~100 times cheaper than
filling protobuf messages; tests/mendloop/test_bench_push.py checks it against the protobuf
encoder of bench_remote_write. The pusher accounts for every sample it sent: accepted,
stale (late or duplicate), rejected (refused one by one, by reason), refused (503/429: told
to retry), failed (connection error: told too), and lost = sent in a 200 answer but counted
nowhere in it (must be 0).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Any

import httpx
import numpy as np

from kernel.errors import MendloopError
from mendloop.bench_remote_write import HEADERS
from twin.model import Twin

BATCH_TARGETS = 5  # targets per push request (1,430 samples: Prometheus sends up to 2,000)
PROTOCOLS = ("remote-write", "json")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


class Template:
    """A WriteRequest of fixed label sets, one sample each at one timestamp per request."""

    def __init__(self, label_sets: Sequence[dict[str, str]]) -> None:
        try:
            import cramjam
        except ImportError as exc:
            raise MendloopError(
                f"bench scale over remote-write needs the dev extra ({exc})"
            ) from exc
        self._compress = cramjam.snappy.compress_raw
        self.labels = [
            b"".join(
                _field(1, _field(1, name.encode()) + _field(2, text.encode()))
                for name, text in sorted(labels.items())
            )
            for labels in label_sets
        ]
        self._built_for = -1  # the timestamp varint's length the template is built for

    def _build(self, stamp_len: int) -> None:
        sample_len = 1 + 8 + 1 + stamp_len
        parts, values, stamps = [], [], []
        at = 0
        for labels in self.labels:
            body_len = len(labels) + 2 + sample_len  # + the sample's tag and length
            head = b"\x0a" + varint(body_len) + labels + b"\x12" + varint(sample_len) + b"\x09"
            values.append(at + len(head))
            stamps.append(at + len(head) + 9)  # after the value and the timestamp's tag
            record = head + bytes(8) + b"\x10" + bytes(stamp_len)
            parts.append(record)
            at += len(record)
        self._bytes = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
        self._values = (np.asarray(values)[:, None] + np.arange(8)).ravel()
        self._stamps = (np.asarray(stamps)[:, None] + np.arange(stamp_len)).ravel()
        self._built_for = stamp_len

    def encode(self, values: np.ndarray, stamp_ms: int) -> bytes:
        """The request with these values (one per label set, in order) at ``stamp_ms``."""
        stamp = varint(stamp_ms)
        if len(stamp) != self._built_for:
            self._build(len(stamp))
        raw = self._bytes.copy()
        raw[self._values] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8)
        raw[self._stamps] = np.tile(np.frombuffer(stamp, dtype=np.uint8), len(self.labels))
        return bytes(self._compress(raw.tobytes()))


class Pusher:
    """The twin's samples of T targets every second, round-robin over the workers."""

    def __init__(
        self, targets: list[str], apis: list[str], protocol: str = "remote-write", shards: int = 4
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        self.twin = Twin(targets=tuple(targets), seed=11)
        self.targets = targets
        self.apis = apis
        self.protocol = protocol
        self.series = list(self.twin.series)
        self.templates = (
            [
                Template(
                    [
                        {"__name__": s, "target": t, "job": "bench"}
                        for t in targets[start : start + BATCH_TARGETS]
                        for s in self.series
                    ]
                )
                for start in range(0, len(targets), BATCH_TARGETS)
            ]
            if protocol == "remote-write"
            else []
        )
        self.counts: Counter[str] = Counter()
        self.push_s: list[float] = []
        self.rounds = 0
        self.shards = shards  # requests in flight at once, as Prometheus' remote-write shards
        self.client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=shards))
        self._counts_lock = threading.Lock()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def inject(self, target: str, fault: str) -> None:
        with self._lock:
            self.twin.inject(target, fault, now=time.time())

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        self.client.close()

    def _run(self) -> None:
        with ThreadPoolExecutor(self.shards, thread_name_prefix="bench-push") as pool:
            while not self._stop.is_set():
                began = time.monotonic()
                now = time.time()
                with self._lock:
                    values = self.twin.advance(now).copy()
                self.rounds += 1
                starts = range(0, len(self.targets), BATCH_TARGETS)
                # each batch to the next worker each second: about (K-1)/K to a non-owner
                n = len(starts)
                list(pool.map(self._send, range(n), repeat(values, n), repeat(now, n)))
                spent = time.monotonic() - began
                self.push_s.append(spent)
                self._stop.wait(max(0.0, 1.0 - spent))

    def _send(self, b: int, values: np.ndarray, now: float) -> None:
        api = self.apis[(b + self.rounds) % len(self.apis)]
        start = b * BATCH_TARGETS
        rows = values[start : start + BATCH_TARGETS]
        if self.protocol == "remote-write":
            self._write(api, self.templates[b].encode(rows.ravel(), int(now * 1000)), rows.size)
            return
        batch = [
            {"series": s, "labels": {"target": t}, "ts": now, "value": float(v)}
            for row, t in enumerate(self.targets[start : start + BATCH_TARGETS])
            for s, v in zip(self.series, rows[row], strict=True)
        ]
        self._push(api, batch)

    def _add(self, **counts: int) -> None:
        with self._counts_lock:
            self.counts.update(counts)

    def _answer(self, n: int, post: Any) -> dict[str, Any] | None:
        """The 200 (or 422) answer's body; None when the sender was told otherwise."""
        try:
            answer = post()
        except httpx.HTTPError:
            self._add(failed=n)  # the sender knows: it would retry
            return None
        if answer.status_code in (429, 503):
            self._add(refused=n)
            return None
        if answer.status_code not in (200, 422):
            self._add(**{f"status_{answer.status_code}": n})
            return None
        body: dict[str, Any] = answer.json()
        return body

    def _write(self, api: str, data: bytes, n: int) -> None:
        self._add(sent=n)
        body = self._answer(
            n, lambda: self.client.post(f"{api}/api/v1/write", content=data, headers=HEADERS)
        )
        if body is None:
            return
        rejected = sum(body["refused"].values())
        stale = body["late"] + body["duplicate"]
        lost = max(0, n - body["accepted"] - stale - rejected)
        self._add(accepted=body["accepted"], stale=stale, rejected=rejected, lost=lost)

    def _push(self, api: str, batch: list[dict[str, Any]]) -> None:
        n = len(batch)
        self._add(sent=n)
        body = self._answer(
            n, lambda: self.client.post(f"{api}/v1/samples", json={"samples": batch})
        )
        if body is None:
            return
        stale, rejected = body.get("stale", 0), len(body.get("rejected", []))
        lost = max(0, n - body["accepted"] - stale - rejected)
        self._add(accepted=body["accepted"], stale=stale, rejected=rejected, lost=lost)
