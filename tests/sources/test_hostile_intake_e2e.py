"""Hostile targets through every intake of a real daemon: the engine (durable_rules, Neo4j,
ansible-runner, SQLite) with its API and tokens, a real twin and a real Prometheus.

A real fault is injected on a real target and the same faulty values arrive under names
built to be templated (``{{ lookup('pipe', ...) }}``), to forge log lines (a newline) or to
reach a shell (``$(...)``): pushed as JSON, Prometheus text and OTLP, and pulled from
Prometheus. The real target's incident opens and is fixed; the hostile names open nothing,
are never stored, every one of their points is counted as ``bad_target``, and the command
they carry never ran.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import app_for
from api.auth import Auth, Role
from kernel.state import State
from loop.sources.prometheus import PrometheusPoller, PrometheusSource
from mendloop.service import build_engine
from twin.model import Twin
from twin.server import TwinRunner

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
TARGET = "pm-site-1"
FAULT = "cache_saturation"


def hostile_targets(marker: Path) -> list[str]:
    return [
        f"{{{{ lookup('pipe','touch {marker}') }}}}",
        f"evil\n{{{{ lookup('pipe','touch {marker}') }}}}",
        f"$(touch {marker})",
    ]


async def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


def text_body(samples, target: str) -> str:
    escaped = target.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "".join(
        f'{s.series}{{target="{escaped}"}} {s.value!r} {int(s.ts * 1000)}\n' for s in samples
    )


def otlp_body(samples, target: str) -> dict:
    metrics = [
        {"name": s.series, "gauge": {"dataPoints": [
            {"timeUnixNano": str(int(s.ts * 1e9)), "asDouble": s.value}]}}
        for s in samples
    ]  # fmt: skip
    resource = {"attributes": [{"key": "service.instance.id", "value": {"stringValue": target}}]}
    return {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": metrics}]}]}


def test_hostile_targets_pushed_through_every_intake_open_nothing(make_settings, graph, tmp_path):
    settings = make_settings(verify_hold_s=3.0, verify_timeout_s=90.0)
    marker = tmp_path / "pwned"
    hostile = hostile_targets(marker)

    async def main():
        with TwinRunner(Twin(targets=(TARGET,), seed=5), tick_s=0.5, port=0) as twin:
            engine = build_engine(settings, {"twin_url": twin.url}, progress=lambda _: None)
            latest: list = []

            def sink(samples):  # the real target, in process as the demo feeds it
                engine.submit(samples)
                latest[:] = samples

            twin.sink = sink
            await engine.start()
            auth = Auth.on(engine.store.engine)
            token = auth.tokens.create("pusher", Role.operator).token
            server = uvicorn.Server(
                uvicorn.Config(
                    app_for(engine, auth=auth), host="127.0.0.1", port=0, log_level="warning",
                    lifespan="off",
                )
            )  # fmt: skip
            serving = asyncio.create_task(server.serve())
            sent: Counter[str] = Counter()
            try:
                await wait_until(lambda: server.started and latest, 30, "the API and samples")
                port = server.servers[0].sockets[0].getsockname()[1]
                client = httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )

                async def push_round() -> None:
                    samples = list(latest)
                    for target in hostile:
                        rows = [
                            {"series": s.series, "labels": {"target": target}, "ts": s.ts,
                             "value": s.value}
                            for s in samples
                        ]  # fmt: skip
                        answers = [
                            await client.post("/v1/samples", json=rows),
                            await client.post(
                                "/v1/samples/prometheus",
                                content=text_body(samples, target),
                                headers={"content-type": "text/plain"},
                            ),
                            await client.post("/v1/metrics", json=otlp_body(samples, target)),
                        ]
                        for intake, answer in zip(("json", "text", "otlp"), answers, strict=True):
                            body = answer.json()
                            assert answer.status_code in (400, 422), body
                            assert body["accepted"] == 0
                            assert {r["reason"] for r in body["rejected"]} == {"bad_target"}
                            sent[intake] += len(samples)

                async with client:
                    await push_round()
                    with twin.locked() as model:
                        model.inject(TARGET, FAULT)
                    deadline = time.monotonic() + 90
                    while not engine.store.list(target=TARGET):
                        assert time.monotonic() < deadline, "no incident on the real target"
                        await push_round()
                        await asyncio.sleep(0.5)
                    incident_id = engine.store.list(target=TARGET)[0].id
                    while not engine.store.get(incident_id).terminal:
                        assert time.monotonic() < deadline + 150, "the real fault not settled"
                        await push_round()
                        await asyncio.sleep(0.5)
                    intake_counts = (await client.get("/v1/intake")).json()
                return (
                    engine.store.get(incident_id),
                    engine.store.list(),
                    engine.monitor.targets(),
                    intake_counts,
                    sent,
                )
            finally:
                server.should_exit = True
                await serving
                await engine.stop()
                engine.close()

    incident, incidents, targets, intake_counts, sent = asyncio.run(main())
    assert incident.state == State.resolved, incident.reason
    assert {i.target for i in incidents} == {TARGET}
    assert targets == [TARGET]
    assert intake_counts["counters"]["bad_target"] == sum(sent.values())
    assert all(sent[intake] > 0 for intake in ("json", "text", "otlp"))
    assert not marker.exists(), "a hostile target was templated and its command ran"


def test_hostile_targets_pulled_from_prometheus_open_nothing(
    start_prometheus, make_settings, graph, tmp_path
):
    settings = make_settings(verify_hold_s=3.0, verify_timeout_s=90.0)
    marker = tmp_path / "pwned"
    hostile = hostile_targets(marker)
    refused_read: set[tuple[str, float]] = set()

    class Recording(PrometheusSource):
        """The real source; remembers every refused point it read (to check the count)."""

        def recent(self, lookback_s, at=None):
            result = super().recent(lookback_s, at)
            refused_read.update(i.point for i in result.issues if i.point is not None)
            return result

    async def main():
        twin_model = Twin(targets=(TARGET, *hostile), seed=11)
        with TwinRunner(twin_model, tick_s=0.5, port=0) as twin:
            prom = start_prometheus([f"127.0.0.1:{twin.port}"], interval="1s")
            engine = build_engine(settings, {"twin_url": twin.url}, progress=lambda _: None)
            queries = {name: name for name in engine.catalog}
            source = Recording(prom.url, queries)
            poller = PrometheusPoller(source, engine.submit, interval_s=1.0)
            await engine.start()
            poller.start()
            try:
                await wait_until(
                    lambda: engine.monitor.latest(TARGET, "cache_hit_ratio") is not None,
                    60,
                    "the first samples through Prometheus",
                )
                with twin.locked() as model:
                    for target in (TARGET, *hostile):
                        model.inject(target, FAULT)
                await wait_until(lambda: engine.store.list(target=TARGET), 90, "an incident")
                incident_id = engine.store.list(target=TARGET)[0].id
                incident = await engine.wait_settled(incident_id, timeout_s=240)
            finally:
                poller.stop()
                source.close()
            try:
                return incident, engine.store.list(), engine.monitor.stats()
            finally:
                await engine.stop()
                engine.close()

    incident, incidents, stats = asyncio.run(main())
    assert incident.state == State.resolved, incident.reason
    assert {i.target for i in incidents} == {TARGET}
    assert stats["targets"] == 1
    # every hostile point read is counted once, however many polls read it again
    assert len(refused_read) > 286 * len(hostile)
    assert stats["counters"]["bad_target"] == len(refused_read)
    assert not marker.exists(), "a hostile target was templated and its command ran"
