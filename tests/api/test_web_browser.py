"""The web page in a real headless browser (Debian chromium via Selenium) against a real
API server, SQLite store, API tokens and monitor (tests/api/conftest.py). Incidents move
as the engine moves them (store transition, then the engine's listeners), so what the
board shows live came through the event stream, not a reload."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from api.auth import Role
from kernel.approval import ApprovalPlan
from kernel.state import State

from .conftest import Served, Site, page_text, sign_in, wait_for, wait_until


@pytest.fixture
def served(site: Site) -> Iterator[Served]:
    with Served(site.app, site.hub) as server:
        yield server


def card_state(browser, incident_id: str) -> tuple[str, str] | None:
    """(column, state) of the incident's card on the board, None when it is not there."""
    cards = browser.find_elements(By.CSS_SELECTOR, f".card[data-incident-id='{incident_id}']")
    if not cards:
        return None
    column = cards[0].find_element(By.XPATH, "ancestor::div[@data-column]")
    return column.get_attribute("data-column"), cards[0].get_attribute("data-state")


def waiting_with_plan(site: Site, target: str = "pm-site-1") -> tuple[str, ApprovalPlan]:
    incident_id = site.open(target)
    site.move(incident_id, State.analyzed, "root cause cache_saturation", fault="cache_saturation")
    site.move(incident_id, State.decided, "sol-cache-scale-out -> approval")
    plan = ApprovalPlan.build(
        incident_id=incident_id,
        solution_id="sol-cache-scale-out",
        title="Scale out the cache",
        risk="medium",
        target=target,
        playbook="cache_scale_out.yml",
        extra_vars={"target": target, "replicas": 3},
        hosts=("localhost",),
        check_mode=True,
        check_status="successful",
        changed=1,
        changed_tasks=("localhost: scale out",),
        diff=("--- before\n+++ after\n-replicas: 2\n+replicas: 3",),
        rollback_playbook="cache_scale_in.yml",
    )
    site.move(incident_id, State.awaiting_approval, "waiting for a person", plan=plan)
    return incident_id, plan


def test_the_board_shows_an_incident_and_moves_it_live(browser, site: Site, served: Served):
    before = site.open("pm-site-1")
    sign_in(browser, served.url, site.token("vera", Role.viewer))
    assert "vera (viewer)" in browser.find_element(By.ID, "who").text
    wait_until(browser, lambda b: card_state(b, before) == ("open", "open"), "the open incident")

    site.move(before, State.analyzed, "root cause cache_saturation", fault="cache_saturation")
    wait_until(
        browser, lambda b: card_state(b, before) == ("analyzed", "analyzed"), "the card moved"
    )
    wait_until(browser, lambda b: "cache_saturation" in page_text(b, ".card"), "the fault")

    after = site.open("pm-site-2")  # opened after the page loaded: arrives by the stream
    wait_until(browser, lambda b: card_state(b, after) == ("open", "open"), "the new incident")
    for state in (State.decided, State.executing, State.verifying, State.resolved):
        site.move(before, state, f"now {state}")
    wait_until(browser, lambda b: card_state(b, before) == ("ended", "resolved"), "resolved")
    counts = {
        c.get_attribute("data-column"): c.find_element(By.CSS_SELECTOR, ".count").text
        for c in browser.find_elements(By.CSS_SELECTOR, ".column")
    }
    assert counts["open"] == "1" and counts["ended"] == "1" and counts["analyzed"] == "0"


def test_a_viewer_sees_the_plan_but_no_approve_button_an_approver_approves(
    browser, site: Site, served: Served
):
    incident_id, plan = waiting_with_plan(site)
    sign_in(browser, served.url, site.token("vera", Role.viewer))
    browser.get(f"{served.url}/ui/#/incident/{incident_id}")
    wait_for(browser, "#approval-role")
    assert "cache_scale_out.yml" in page_text(browser, "#plan")
    assert "+replicas: 3" in page_text(browser, "#plan .diff")
    assert browser.find_elements(By.CSS_SELECTOR, "#approve, #reject") == []

    sign_in(browser, served.url, site.token("abe", Role.approver))
    browser.get(f"{served.url}/ui/#/incident/{incident_id}")
    wait_for(browser, "#approval-comment").send_keys("go ahead")
    browser.find_element(By.ID, "approve").click()
    wait_until(
        browser,
        lambda b: b.find_element(By.ID, "incident-state").get_attribute("data-state") == "approved",
        "the incident approved, live",
    )
    assert site.approved == [(incident_id, "abe", plan.plan_hash)]
    note = site.store.get(incident_id).timeline[-1].note
    assert note == "approved by abe: go ahead"


def test_without_a_valid_token_the_page_asks_for_one(browser, site: Site, served: Served):
    site.open("pm-site-1")
    browser.get(f"{served.url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{served.url}/ui/")
    wait_for(browser, "#token-input").send_keys("mlt_nope_nope")
    browser.find_element(By.ID, "token-submit").click()
    wait_until(
        browser, lambda b: "not accepted" in b.find_element(By.ID, "login-error").text, "refusal"
    )
    assert browser.find_elements(By.CSS_SELECTOR, ".card") == []


def test_region_view_highlights_a_hot_station_area(browser, site: Site, served: Served):
    now = time.time()
    rates = {"pm-site-1": 40.0, "pm-site-2": 11.0, "pm-site-3": 11.0}
    site.monitor.ingest(
        [
            {"series": "cs_complaints_per_h", "labels": {"target": t}, "ts": now, "value": v}
            for t, v in rates.items()
        ]
    )
    sign_in(browser, served.url, site.token("vera", Role.viewer))
    browser.get(f"{served.url}/ui/#/regions")
    hot = wait_for(browser, ".area[data-area='xihu-sa-01']")
    assert hot.get_attribute("data-hot") == "true" and "hot" in hot.get_attribute("class")
    calm = browser.find_element(By.CSS_SELECTOR, ".area[data-area='haishu-sa-01']")
    assert calm.get_attribute("data-hot") == "false"
    assert "1.57x the mean 25.5 of Zhejiang" in hot.text
