"""Pushed samples of another worker's targets: forwarded, or refused to the sender with
503 + Retry-After when the owner cannot take them; never dropped quietly. Real PostgreSQL
leases, real monitors, the real peer route (FastAPI)."""

from __future__ import annotations

import json
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.cluster import install_cluster
from loop.cluster.forward import PATH, SIGNATURE, ClusterIntake, ForwardRefused, sign
from loop.cluster.leases import Leases
from loop.monitor import Monitor
from loop.store import IncidentStore
from rules.catalog import load_catalog

from .conftest import needs_postgres

pytestmark = needs_postgres


class Holder:
    """A worker's ownership as the intake sees it, straight from its leases."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.worker_id = leases.worker_id

    def owns(self, target: str) -> bool:
        return target in self.leases.held

    def claim(self, target: str) -> bool:
        return self.leases.claim(target) is not None


@pytest.fixture
def catalog():
    return load_catalog()  # the twin's (the power-marketing pack's)


def sample(target: str, series: str, ts: float) -> dict:
    return {"series": series, "labels": {"target": target}, "ts": ts, "value": 1.0}


def test_a_push_the_owner_cannot_take_is_refused_with_retry_after_and_counted(
    pg_url, catalog
) -> None:
    store = IncidentStore(pg_url)
    series = next(iter(catalog))
    a = Leases(store.engine, "a", 30)
    a.register("h", 1, "http://127.0.0.1:9")  # nothing listens there
    b = Leases(store.engine, "b", 30)
    b.register("h", 2, "http://127.0.0.1:9")
    a.tick(), b.tick()
    assert a.claim("t-a") is not None
    b.tick()
    assert b.claim("t-b") is not None
    monitor = Monitor(catalog)
    intake = ClusterIntake(Holder(a), monitor.ingest, key=a.cluster_key())
    now = time.time()
    batch = [
        sample("t-a", series, now),
        sample("t-b", series, now),
        sample("t-a", series, now + 0.5),
    ]
    with pytest.raises(ForwardRefused) as refused:
        intake.submit(batch)
    assert refused.value.retry_after_s >= 1 and refused.value.owner_url == "http://127.0.0.1:9"
    assert intake.counts == {"local": 2, "refused": 1}  # a's own were taken first
    assert monitor.stats()["counters"]["accepted"] == 2
    store.close()


def test_the_peer_route_takes_signed_samples_of_its_own_targets_only(pg_url, catalog) -> None:
    store = IncidentStore(pg_url)
    series = next(iter(catalog))
    b = Leases(store.engine, "b", 30)
    b.register("h", 2, "http://b")
    b.tick()
    b.claim("t-b")
    key = b.cluster_key()
    monitor = Monitor(catalog)
    app = FastAPI()
    install_cluster(app, monitor.ingest, lambda t: t in b.held, key, lambda: {})
    client = TestClient(app)
    body = json.dumps(
        {"from": "a", "owner": None, "samples": [sample("t-b", series, time.time())]}
    ).encode()
    unsigned = client.post(PATH, content=body, headers={SIGNATURE: "0" * 64})
    assert unsigned.status_code == 401
    taken = client.post(PATH, content=body, headers={SIGNATURE: sign(key, body)})
    assert taken.status_code == 200 and taken.json()["accepted"] == 1
    stranger = json.dumps(
        {"from": "a", "owner": None, "samples": [sample("t-x", series, time.time())]}
    ).encode()
    moved = client.post(PATH, content=stranger, headers={SIGNATURE: sign(key, stranger)})
    assert moved.status_code == 421 and moved.json()["targets"] == ["t-x"]
    store.close()
