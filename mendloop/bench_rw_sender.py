"""The sender of `mendloop bench ingest`'s HTTP figures: a process of its own (on a core of
its own when there is one), one request per shard in flight, as Prometheus' remote-write
sends (its own process, several shards). Posting from the server's process, one request at
a time, counted the client's cost and every request's round trip against the worker.

    with sender_pool() as pool:
        sent = pool.submit(send, url, "/api/v1/write", HEADERS, warm, streams, {1}).result()
        sent.seconds, sent.statuses   # wall time of the timed bodies, answers by status

This module is what the child process imports (spawned, not forked: the server's threads
are running), so it imports only httpx.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class Sent:
    """What the sender saw: the timed bodies' wall time and their answers."""

    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: int = 0


def sender_pool() -> ProcessPoolExecutor:
    """One spawned process for the sender."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def pin(cpus: set[int] | None) -> None:
    """Run on ``cpus`` (this thread and those it starts) when the platform allows it."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def send(
    url: str,
    path: str,
    headers: dict[str, str],
    warm: list[bytes],
    streams: list[list[bytes]],
    cpus: set[int] | None = None,
) -> Sent:
    """Posts ``warm`` one by one (not timed), then each stream's bodies in order, the
    streams (shards) at once: one request of each in flight."""
    pin(cpus)
    shards = len(streams)
    limits = httpx.Limits(max_connections=shards, max_keepalive_connections=shards)
    with httpx.Client(base_url=url, timeout=300, limits=limits) as client:

        def post(body: bytes) -> tuple[int, int]:
            answer = client.post(path, content=body, headers=headers)
            accepted = answer.json().get("accepted", 0) if answer.status_code == 200 else 0
            return answer.status_code, int(accepted)

        def shard(bodies: list[bytes]) -> list[tuple[int, int]]:
            return [post(body) for body in bodies]

        for body in warm:
            status, _ = post(body)
            if status != 200:
                raise RuntimeError(f"warm-up request answered {status}")
        with ThreadPoolExecutor(shards, thread_name_prefix="bench-rw-shard") as pool:
            t0 = time.perf_counter()
            answers = [answer for sent in pool.map(shard, streams) for answer in sent]
            seconds = time.perf_counter() - t0
    return Sent(
        seconds=seconds,
        statuses=Counter(status for status, _ in answers),
        accepted=sum(accepted for _, accepted in answers),
    )
