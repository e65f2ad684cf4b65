"""Fixtures of the web page's tests: a real API server (uvicorn on a free port, in a thread
with its own event loop), a real SQLite store with real API tokens, the real monitor, and
Debian's chromium driven by Selenium (chromedriver).

    with Served(app, hub) as server:          # server.url = "http://127.0.0.1:<port>"
        sign_in(browser, server.url, token)
        wait_for(browser, ".card[data-state='open']")
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.auth import Auth, Role
from api.events import EventHub, StreamingServer
from api.web import web_router
from kernel.config import REPO_ROOT
from kernel.models import utcnow
from kernel.state import State
from loop.events import StageEvent
from loop.monitor import Monitor
from loop.sqi import SQIModel, SQIResult
from loop.store import IncidentStore, IncidentView
from rules.catalog import Catalog, load_catalog

WAIT_S = 60  # generous: the machine is shared; a wait ends as soon as the page shows it


class Served:
    """An app served by uvicorn on 127.0.0.1:<free port> from a background thread."""

    def __init__(self, app: FastAPI, hub: EventHub | None = None) -> None:
        self.app = app
        self.hub = hub
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: uvicorn.Server | None = None
        self._serve: asyncio.Task[None] | None = None
        self.url = ""

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Served:
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        # as the daemon: the server ends the hub's open streams when it stops
        self.server = StreamingServer(config, self.hub) if self.hub else uvicorn.Server(config)
        self._serve = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self.server is not None and self._serve is not None:
            self.server.should_exit = True
            await self._serve

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT / "packs" / "power-marketing" / "metrics.yaml")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium (apt: chromium, chromium-driver; ./dev installs them)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "the browser tests need chromium and chromium-driver (./dev setup)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(WAIT_S)
    yield chrome
    chrome.quit()


def wait_until(browser: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Until ``condition(browser)`` is truthy (its value), or fail after WAIT_S."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition, message=f"page never showed {what}")


def wait_for(browser: Any, css: str) -> Any:
    """The first element matching ``css`` once it is on the page."""
    from selenium.webdriver.common.by import By

    return wait_until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, css), css)[0]


def sign_in(browser: Any, url: str, token: str | None) -> None:
    """Open the page in a fresh tab state and sign in with ``token`` like a person would."""
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{url}/ui/")
    if token is not None:
        wait_for(browser, "#token-input").send_keys(token)
        browser.find_element(By.ID, "token-submit").click()
    wait_until(browser, lambda b: b.find_element(By.ID, "who").text, "who is signed in")
    wait_for(browser, "#stream.live")


def page_text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, css))


class Site:
    """The page's server without the whole engine: a real SQLite store with API tokens,
    the real monitor and SQI model, the event hub; ``move`` does what Engine._move does
    (store transition, then the listeners), and approve/reject what the engine's do to the
    store (the real playbook run behind an approval is the end-to-end test's)."""

    def __init__(self, db: Path, catalog: Catalog, auth: bool = True) -> None:
        self.store = IncidentStore(f"sqlite:///{db}")
        self.auth = Auth.on(self.store.engine) if auth else None
        self.hub = EventHub()
        self.monitor = Monitor(catalog)
        self.model = SQIModel(catalog)
        self.approved: list[tuple[str, str, str | None]] = []
        router = web_router(self.hub, self.monitor, catalog, self.sqi, keepalive_s=0.5)
        self.app = create_app(self.store, approvals=self, auth=self.auth, web=router)

    def token(self, name: str, role: Role) -> str:
        assert self.auth is not None
        return self.auth.tokens.create(name, role, by="test").token

    def sqi(self, target: str) -> SQIResult | None:
        latest = {s: p[1] for s in self.model.series if (p := self.monitor.latest(target, s))}
        return self.model.score(latest)

    def open(self, target: str) -> str:
        incident_id = self.store.open_incident(target, [])
        self.hub.publish(StageEvent(incident_id, target, State.open, "test finding", utcnow()))
        return incident_id

    def move(self, incident_id: str, state: State, note: str = "", **kw: Any) -> IncidentView:
        view = self.store.transition(incident_id, state, note, **kw)
        self.hub.publish(StageEvent(incident_id, view.target, state, note, utcnow()))
        return view

    def approve(
        self, incident_id: str, by: str = "api", comment: str = "", plan_hash: str | None = None
    ) -> IncidentView:
        self.approved.append((incident_id, by, plan_hash))
        return self.move(incident_id, State.approved, f"approved by {by}: {comment}")

    def reject(self, incident_id: str, by: str = "api", comment: str = "") -> IncidentView:
        return self.move(incident_id, State.rejected, f"rejected by {by}: {comment}")

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, catalog: Catalog) -> Iterator[Site]:
    site = Site(tmp_path / "web.db", catalog)
    yield site
    site.close()
