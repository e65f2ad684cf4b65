"""Remote-write to a worker that does not own the targets, with two real workers
(`mendloop run`) on one real PostgreSQL; the requests are built with the bench's encoder
(protobuf + snappy, independent of our decoder):

1. a request holding both workers' targets, sent to one of them, is answered 200 with every
   sample accounted for; the other worker's samples are in *its* windows (value for value)
   and not in the receiver's; the forwarding is counted on both sides;
2. the owner is killed (`kill -9`): the same kind of request is answered 503 +
   Retry-After (the samples counted as refused), the receiver's own part taken; resent as
   Prometheus resends it, once the survivor holds every target, it is answered 200: the
   part taken before counts as duplicate, the rest is taken. Nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.auth import Role, TokenStore
from loop.store import IncidentStore
from mendloop.bench_remote_write import HEADERS, _encoder
from rules.catalog import load_catalog

from .conftest import needs_postgres
from .procs import Worker, holders, wait_for, worker_ids

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j, needs_postgres]
TARGETS = ("rw-1", "rw-2", "rw-3", "rw-4")
TTL_S = 6
SERIES = list(load_catalog())[:20]


def body(stamp_ms: int, value_of: dict[str, float]) -> bytes:
    return _encoder()(
        [
            ({"__name__": name, "instance": t, "job": "test"}, [(value_of[t] + k, stamp_ms)])
            for t in TARGETS
            for k, name in enumerate(SERIES)
        ]
    )


class Pair:
    def __init__(self, neo4j_settings, pg_url: str, tmp: Path) -> None:
        self.store = IncidentStore(pg_url)
        tokens = TokenStore(self.store.engine)
        self.pusher = tokens.create("prometheus", Role.operator).token
        self.viewer = tokens.create("ops", Role.viewer).token
        env = {
            **os.environ,
            "MENDLOOP_DATABASE_URL": pg_url,
            "MENDLOOP_WORKER_LEASE_TTL_S": str(TTL_S),
            "MENDLOOP_SHADOW": "all",  # nothing to run here: this is about samples
            **neo4j_settings.neo4j_environ(),
        }
        self.workers = [Worker(name, env, tmp) for name in ("a", "b")]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            wait_for(lambda w=worker: httpx.get(f"{w.api}/healthz").status_code == 200,
                     "API up", self.workers)  # fmt: skip

    def held_by(self, worker: Worker) -> set[str]:
        me = worker_ids(self.store.engine).get(worker.api)
        return {t for t, w in holders(self.store.engine).items() if w is not None and w == me}

    def write(self, worker: Worker, data: bytes) -> httpx.Response:
        headers = {**HEADERS, "Authorization": f"Bearer {self.pusher}"}
        return httpx.post(f"{worker.api}/api/v1/write", content=data, headers=headers, timeout=30)

    def window(self, worker: Worker, target: str, name: str) -> list[list[float]]:
        answer = httpx.get(
            f"{worker.api}/v1/targets/{target}/series",
            params={"names": name},
            headers={"Authorization": f"Bearer {self.viewer}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["series"][0]["points"]

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.store.close()


@pytest.fixture
def pair(neo4j_settings, pg_url, tmp_path) -> Iterator[Pair]:
    pair = Pair(neo4j_settings, pg_url, tmp_path)
    try:
        pair.start()
        yield pair
    finally:
        pair.close()


def test_remote_write_to_the_non_owner_reaches_the_owner_or_is_refused_with_503(
    pair: Pair,
) -> None:
    a, b = pair.workers
    first = body(int(time.time() * 1000), dict.fromkeys(TARGETS, 1.0))
    # unknown targets: claimed by the receiver under quota, the rest 503 until leased
    wait_for(lambda: pair.write(a, first).status_code == 200, "first request taken", [a, b])
    wait_for(
        lambda: len(pair.held_by(a)) == 2 and len(pair.held_by(b)) == 2,
        "the targets split 2/2",
        [a, b],
    )
    mine, theirs = sorted(pair.held_by(a)), sorted(pair.held_by(b))
    before_a = a.status(pair.viewer)["intake"]
    before_b = b.status(pair.viewer)["remote_write_forwarded_in"]

    # 1. to the non-owner: 200, every sample accounted for, b's in b's windows
    stamp = int(time.time() * 1000)
    values = {t: 100.0 * (i + 1) for i, t in enumerate(TARGETS)}
    answer = pair.write(a, body(stamp, values))
    assert answer.status_code == 200, answer.text
    n = len(SERIES) * len(TARGETS)
    assert answer.json() == {"samples": n, "accepted": n, "late": 0, "duplicate": 0, "refused": {}}
    after_a = a.status(pair.viewer)["intake"]
    half = len(SERIES) * 2
    assert after_a.get("forwarded", 0) - before_a.get("forwarded", 0) == half
    assert after_a["local"] - before_a["local"] == half
    after_b = b.status(pair.viewer)["remote_write_forwarded_in"]
    assert after_b["samples"] - before_b.get("samples", 0) == half
    for target in theirs:
        for k, name in enumerate(SERIES[:3]):
            assert pair.window(b, target, name)[-1] == [stamp / 1000, values[target] + k]
            assert pair.window(a, target, name) == []  # never kept by the non-owner
    for target in mine:
        assert pair.window(a, target, SERIES[0])[-1] == [stamp / 1000, values[target]]

    # 2. the owner dies: 503 + Retry-After, counted; the resent request is taken whole
    b.kill9()
    stamp = int(time.time() * 1000)
    values = {t: 1000.0 * (i + 1) for i, t in enumerate(TARGETS)}
    again = body(stamp, values)
    refused = pair.write(a, again)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert a.status(pair.viewer)["intake"]["refused"] >= half
    for target in mine:  # a's own part was taken before the 503
        assert pair.window(a, target, SERIES[0])[-1] == [stamp / 1000, values[target]]
    wait_for(lambda: len(pair.held_by(a)) == 4, "a took b's targets", [a], timeout_s=10 * TTL_S)
    resent = wait_for(
        lambda: (r := pair.write(a, again)).status_code == 200 and r, "the resend taken", [a]
    )
    assert resent.json() == {
        "samples": n,
        "accepted": half,  # b's former targets, now a's
        "late": 0,
        "duplicate": half,  # a's own, taken before the 503: not written twice
        "refused": {},
    }
    for target in theirs:
        assert pair.window(a, target, SERIES[1])[-1] == [stamp / 1000, values[target] + 1]
