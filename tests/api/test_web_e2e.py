"""End to end through the web page: the real Engine on the twin (durable_rules, Neo4j,
ansible-runner, SQLite), the API with tokens serving the page, Debian chromium. A fault is
injected, the fix waits for an approval (automatic fixes are capped at 0 per target and
hour), an approver clicks Approve in the page, the playbook really runs against the twin,
and the page shows the incident resolved, live, with its charts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from api.app import app_for
from api.auth import Auth, Role
from api.events import EventHub, StreamingServer
from api.web import engine_web_router
from kernel.models import RunStatus, VerificationStatus
from kernel.state import State
from mendloop.service import build_engine

from ..e2e.conftest import LoopHarness, empty_graph, settings_for
from .conftest import page_text, sign_in, wait_for, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

TARGET = "web-e2e-1"
FAULT = "cache_saturation"


class WebLoop(LoopHarness):
    """The e2e harness with authentication on and the web page served (as the daemon)."""

    hub: EventHub
    auth: Auth

    async def _start(self) -> None:
        import asyncio

        import uvicorn

        engine = build_engine(self.settings, {"twin_url": self.twin.url}, progress=lambda _: None)
        self.engine = engine
        self.twin.sink = engine.submit
        self.hub = EventHub()
        engine.listeners.append(self.hub.publish)
        self.auth = Auth.on(engine.store.engine)
        await engine.start()
        app = app_for(engine, auth=self.auth, web=engine_web_router(engine, self.hub))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self.server = StreamingServer(config, self.hub)
        self._serve = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}"


@pytest.fixture
def web_loop(neo4j_settings, tmp_path) -> Iterator[WebLoop]:
    empty_graph(neo4j_settings)
    settings = settings_for(
        neo4j_settings,
        tmp_path / "var",
        verify_hold_s=3.0,
        verify_timeout_s=60.0,
        autonomy_max_per_target_per_hour=0,  # every fix waits for a person
    )
    with WebLoop(settings, [TARGET]) as loop:
        yield loop


def test_an_approval_clicked_in_the_page_runs_the_playbook_and_the_page_sees_it_resolve(
    browser, web_loop: WebLoop
) -> None:
    loop = web_loop
    engine = loop.engine
    assert engine is not None
    token = loop.auth.tokens.create("abe", Role.approver, by="test").token
    sign_in(browser, loop.api_url, token)
    time.sleep(2)  # a healthy baseline first (as the other e2e tests)
    loop.inject(TARGET, FAULT)

    # the board shows the incident arriving and stopping in "awaiting approval", live
    card = wait_for(browser, ".column[data-column='awaiting_approval'] .card")
    incident_id = card.get_attribute("data-incident-id")
    assert engine.store.get(incident_id).state == State.awaiting_approval
    card.click()

    wait_for(browser, "#approve")
    plan = engine.store.get(incident_id).plan
    assert plan is not None
    assert browser.find_element(By.ID, "plan").get_attribute("data-plan-hash") == plan.plan_hash
    assert plan.playbook in page_text(browser, "#plan")
    assert FAULT in page_text(browser, "#rca")
    wait_for(browser, ".similar-case")  # the graph's similar cases, with similarity
    browser.find_element(By.ID, "approval-comment").send_keys("approved in the browser")
    browser.find_element(By.ID, "approve").click()

    # the page follows the loop live: approved -> executing -> verifying -> resolved
    wait_until(
        browser,
        lambda b: b.find_element(By.ID, "incident-state").get_attribute("data-state") == "resolved",
        "the incident resolved",
    )
    incident = engine.store.get(incident_id)
    assert incident.state == State.resolved
    assert incident.approval is not None and incident.approval.by == "abe"
    assert incident.approval.plan_hash == plan.plan_hash
    assert incident.execution is not None and incident.execution.status == RunStatus.successful
    assert incident.execution.run is not None and not incident.execution.run.check_mode
    assert incident.verification is not None
    assert incident.verification.status == VerificationStatus.passed
    assert "approved in the browser" in " ".join(t.note for t in incident.timeline)
    twin = loop.twin_state(TARGET)
    assert twin["faults"] == [] and len(twin["actions"]) == 1  # the playbook really fixed it

    states = [
        r.get_attribute("data-state")
        for r in browser.find_elements(By.CSS_SELECTOR, "#timeline tr[data-state]")
    ]
    assert states[-4:] == ["approved", "executing", "verifying", "resolved"]
    assert "verification: passed" in page_text(browser, "#verification").lower()
    # verification charts from the monitor's windows: one per series that mattered
    wait_for(browser, "#charts .chart polyline")
    drawn = {
        c.get_attribute("data-series") for c in browser.find_elements(By.CSS_SELECTOR, ".chart")
    }
    checked = {c.series for c in incident.verification.checks} - {"sqi"}  # SQI: its own panel
    assert checked and checked <= drawn
