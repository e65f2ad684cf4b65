"""Assembling the engine from Settings and its site, and running it as the daemon behind
the REST API.

engine = build_engine(settings)                                # the site of settings.site_dir
engine = build_engine(settings, {"twin_url": twin.url})        # site defaults overridden
asyncio.run(run_daemon(settings))         # `mendloop run`: a site with problems refuses
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import uvicorn

from api.app import app_for
from api.auth import Auth
from api.chatops import ChatOps
from api.chatops.config import ChatConfig
from api.events import EventHub, StreamingServer
from api.web import engine_web_router
from kernel.config import DEFAULT_SITE, Settings
from kernel.errors import GraphUnavailable
from kernel.state import TERMINAL
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from knowledge.seed import seed_graph
from loop.daemon import Engine
from loop.execute import PlaybookRunner
from loop.recorder import IncidentRecorder
from loop.sources.prometheus import PrometheusPoller, PrometheusSource
from loop.store import IncidentStore
from mendloop import local_neo4j
from mendloop.output import Progress, stderr_progress
from mendloop.workers import join_cluster, single_worker
from rules.reload import RuleSource
from sites import Site, load_site
from sites.load import rule_loader

log = logging.getLogger("mendloop")


def connect_graph(settings: Settings, progress: Progress = stderr_progress) -> KnowledgeGraph:
    """Connect to NEO4J_URI; when that is the local default and nothing answers, start it."""
    try:
        return KnowledgeGraph.connect(settings)
    except GraphUnavailable:
        if not settings.uses_local_neo4j:
            raise
    progress("Neo4j is not running locally: building/starting it (mendloop neo4j start)")
    local_neo4j.ensure_built(progress)
    local_neo4j.start(settings)
    return KnowledgeGraph.connect(settings)


def build_engine(
    settings: Settings,
    defaults: Mapping[str, str | int | float | bool] | None = None,
    progress: Progress = stderr_progress,
    database_url: str | None = None,
    site: Site | None = None,
) -> Engine:
    """The engine of ``site`` (default: the site of ``settings.site_dir``, SiteError with
    every problem when it does not hold together); ``defaults`` override the site's
    parameter defaults (the twin's URL in tests and the demo)."""
    site = site or load_site(settings.site_dir)
    if defaults is None and site.root.resolve() == DEFAULT_SITE.resolve():
        # the bundled twin site: its twin is where MENDLOOP_TWIN_HOST/PORT say
        defaults = {"twin_url": f"http://{settings.twin_host}:{settings.twin_port}"}
    if defaults:
        site = dataclasses.replace(site, defaults={**site.defaults, **defaults})
    progress(f"site {site.name} ({site.root}): packs {', '.join(site.packs) or 'none'}")
    graph = connect_graph(settings, progress)
    progress("loading the embedding model (all-MiniLM-L6-v2, offline)")
    embedder = Embedder.shared()
    solutions = site.solutions()
    seeded = seed_graph(graph, embedder, list(solutions.values()), list(site.cases), site.domain)
    progress(
        f"knowledge graph ready: {seeded['solutions']} solutions, {seeded['cases']} seed cases "
        f"({seeded['embedded']} newly embedded)"
    )
    store = IncidentStore(database_url or settings.database_url)
    runner = PlaybookRunner(
        site.playbook_dirs,
        settings.var_dir / "runs",
        settings.playbook_timeout_s,
        inventory=site.inventory.path if site.inventory is not None else None,
    )
    rule_source = RuleSource(site_rule_dirs(site), rule_loader(site))
    engine = Engine(
        settings, store, graph, embedder, site.catalog, site.rules, runner, site, rule_source
    )
    # every incident's raw samples, for `mendloop replay` (loop/recorder.py)
    recorder = IncidentRecorder(
        engine.monitor, settings.var_dir / "recordings", previous_end=last_ended(store)
    )
    engine.listeners.append(recorder)
    return engine


def last_ended(store: IncidentStore) -> Callable[[str], float | None]:
    """When the newest ended incident of a target ended (unix seconds), from the store:
    where a recording of its next incident may start (loop/recorder.py)."""

    def ended(target: str) -> float | None:
        done = [i for i in store.list(target=target, limit=20) if i.state in TERMINAL]
        return max(i.updated_at.timestamp() for i in done) if done else None

    return ended


def site_rule_dirs(site: Site) -> list[Path]:
    """The rules/ folders of the site and its packs (what hot reload watches)."""
    dirs = {path.parent for path in site.rule_files}
    dirs.add(site.root / "rules")
    return sorted(dirs)


def flush_recordings(engine: Engine) -> None:
    for listener in engine.listeners:
        if isinstance(listener, IncidentRecorder):
            listener.flush()


async def run_daemon(settings: Settings) -> None:
    """The loop and the REST API in one process until SIGINT/SIGTERM."""
    ChatConfig.from_settings(settings)  # a bad MENDLOOP_CHAT_* fails now, not after Neo4j
    lock = single_worker(settings.database_url)  # SQLite: one worker (ConfigError otherwise)
    engine = build_engine(settings)
    joined = join_cluster(engine, settings)  # PostgreSQL: one worker of several (leases)
    auth = Auth.on(engine.store.engine) if settings.api_auth else None
    if auth is not None and not auth.tokens.list():
        stderr_progress(
            "no API tokens yet: every call will be refused; create one with "
            "`mendloop token create NAME --role admin`"
        )
    hub = EventHub()  # the web page's live board: stage events -> Server-Sent Events
    engine.listeners.append(hub.publish)
    # MENDLOOP_CHAT_*; None: off. Chat acts through the same service as the REST API
    chat = ChatOps.from_settings(settings, engine.store, engine.operations)
    if chat is not None:  # stage messages to chat (queued: never blocks the loop)
        engine.listeners.append(chat.notify)
        if joined is not None:
            chat.replays = joined.replay_guard()  # shared by every worker
    app = app_for(
        engine,
        auth=auth,
        max_body_bytes=settings.api_max_body_bytes,
        web=engine_web_router(engine, hub, **({"tickets": joined.tickets()} if joined else {})),
        chat=chat.router if chat is not None else None,
        chat_status=chat.status if chat is not None else None,
        submit=joined.intake.submit if joined is not None else None,
        remote_write=joined.writes if joined is not None else None,
    )
    if joined is not None:
        joined.install(app)
    server = StreamingServer(
        uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            timeout_graceful_shutdown=3,
        ),
        hub,  # ends the page's open event streams when the server stops
    )
    poller = None
    if settings.prometheus_url:
        source = PrometheusSource.for_catalog(settings.prometheus_url, engine.catalog)
        if joined is not None:  # sharded by lease: this worker's targets only
            source.shard = joined.cluster.held
        poller = PrometheusPoller(source, engine.submit, settings.prometheus_interval_s)
    await engine.start()
    if chat is not None:
        chat.start()
    if poller is not None:
        poller.start()
        stderr_progress(f"pulling the catalog from Prometheus at {settings.prometheus_url}")
    stderr_progress(f"mendloop daemon: API on http://{settings.api_host}:{settings.api_port}")
    try:
        await server.serve()
    finally:
        if poller is not None:
            poller.stop()
        await engine.stop()
        if chat is not None:
            chat.stop()
        flush_recordings(engine)
        if auth is not None:
            auth.flush()
        if joined is not None:
            joined.leave()
        engine.close()
        lock.release()


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop run`: the daemon until SIGINT/SIGTERM."""
    asyncio.run(run_daemon(settings))
    return 0
