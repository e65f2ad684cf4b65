"""The loop closes on samples that only reach mendloop through a real Prometheus: the
twin is scraped by Prometheus, the daemon pulls the catalog over Prometheus' HTTP API,
and the fix is verified on what Prometheus scrapes after the playbook ran."""

import asyncio

import pytest

from kernel.state import State
from loop.sources.prometheus import PrometheusPoller, PrometheusSource
from mendloop.service import build_engine
from twin.model import Twin
from twin.server import TwinRunner

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
TARGET = "pm-site-1"


async def wait_until(predicate, timeout_s, what):
    for _ in range(int(timeout_s / 0.25)):
        if predicate():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_loop_closes_on_samples_pulled_from_prometheus(start_prometheus, make_settings, graph):
    settings = make_settings(verify_hold_s=3.0, verify_timeout_s=90.0)

    async def main():
        with TwinRunner(Twin(targets=(TARGET,), seed=11), tick_s=0.5, port=0) as twin:
            prom = start_prometheus([f"127.0.0.1:{twin.port}"], interval="1s")
            engine = build_engine(settings, {"twin_url": twin.url}, progress=lambda _: None)
            source = PrometheusSource.for_catalog(prom.url, engine.catalog)
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
                    model.inject(TARGET, "cache_saturation")
                await wait_until(lambda: engine.store.list(target=TARGET), 90, "an incident")
                incident_id = engine.store.list(target=TARGET)[0].id
                incident = await engine.wait_settled(incident_id, timeout_s=240)
                with twin.locked() as model:
                    faults = model.state(TARGET)["faults"]
                return incident, faults, engine.monitor.stats()
            finally:
                poller.stop()
                await engine.stop()
                engine.close()

    incident, faults, stats = asyncio.run(main())
    assert incident.state == State.resolved, incident.reason
    assert incident.report.top.fault == "cache_saturation"
    assert incident.execution.run.changed == 1 and faults == []
    assert incident.verification.status == "passed"
    assert stats["counters"]["accepted"] > 286  # several scrapes' worth, all via Prometheus
    assert stats["counters"]["duplicate"] == 0  # the poller only hands on new samples
