"""What the routers reach, and how: one ``Services`` on ``app.state``, typed dependencies.

    @router.get("/v1/solutions")
    def solutions(svc: Svc, who: Viewer) -> ...:
        engine = svc.need_engine()          # 503 on a server built without the engine

``create_app`` fills ``Services``; a server built from a store alone (tests of one concern,
a read-only API) answers 503 on what needs the engine, never 500. ``EngineApi`` is what the
routes use of ``loop.daemon.Engine`` and ``PeopleActions`` what people do through them
(``loop.operations.Operations``): typed interfaces, so anything shaped like them can stand
behind the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request

from knowledge.matcher import Matcher
from loop.cluster.forward import Submit
from loop.estate import Estate
from loop.monitor import IngestResult, Monitor
from loop.status import LoopStatus
from loop.store import IncidentStore, IncidentView

if TYPE_CHECKING:
    from api.metrics import ApiMetrics
    from kernel.approval import ApprovalPlan, AutomationStatus
    from kernel.config import Settings
    from kernel.domain import Domain
    from kernel.errors import RuleFileError
    from knowledge.embedding import Embedder
    from knowledge.graph import KnowledgeGraph
    from loop.analyze import Analyzer
    from loop.findings import ReloadResult
    from loop.ledger import Ledger
    from loop.solutions import SolutionSpec
    from rules.catalog import Catalog

class Approvals(Protocol):
    """What approving needs (loop.operations.Operations has both); ``plan_hash`` is passed
    only when the caller named one."""

    def approve(self, incident_id: str, by: str = ..., comment: str = ...) -> IncidentView: ...

    def reject(self, incident_id: str, by: str = ..., comment: str = ...) -> IncidentView: ...


class PeopleActions(Approvals, Protocol):
    """What people do through the API (loop.operations.Operations)."""

    def plan(self, incident_id: str) -> ApprovalPlan | None: ...

    def pause(self, target: str | None, by: str, reason: str = "") -> AutomationStatus: ...

    def resume(self, target: str | None, by: str) -> AutomationStatus: ...

    def automation(self) -> AutomationStatus: ...

    def reanalyze(self, incident_id: str, by: str) -> IncidentView: ...

    def propose(self, incident_id: str, solution_id: str, by: str) -> IncidentView: ...

    def close(self, incident_id: str, by: str, comment: str = "") -> IncidentView: ...

    def escalate(self, incident_id: str, by: str, comment: str = "") -> IncidentView: ...


class RuleUpkeep(Protocol):
    """The engine's rule reloads (loop.watch.Upkeep)."""

    errors: tuple[RuleFileError, ...]

    def reload_rules(self) -> ReloadResult | None: ...


class EngineApi(Protocol):
    """What the routes use of loop.daemon.Engine."""

    settings: Settings
    store: IncidentStore
    graph: KnowledgeGraph
    embedder: Embedder
    catalog: Catalog
    library: Mapping[str, SolutionSpec]
    domain: Domain
    estate: Estate
    ledger: Ledger
    analyzer: Analyzer
    monitor: Monitor
    listeners: list[Callable[[Any], None]]

    @property
    def upkeep(self) -> RuleUpkeep: ...

    @property
    def operations(self) -> PeopleActions: ...

    def submit(
        self,
        batch: Iterable[Any],
        *,
        owner: str | None = None,
        refused: Mapping[str, int] | None = None,
    ) -> IngestResult: ...

    def took(self, result: IngestResult) -> None: ...

    def loop_running(self) -> bool: ...

    def loop_health(self) -> tuple[bool, str]: ...

    def findings_queued(self) -> int: ...

    def incidents_in_flight(self) -> int: ...

    def status(self) -> LoopStatus: ...


@dataclass
class Services:
    store: IncidentStore
    engine: EngineApi | None = None
    submit: Submit | None = None
    stats: Callable[[], dict[str, Any]] | None = None
    approvals: Approvals | None = None
    operations: PeopleActions | None = None
    metrics: ApiMetrics | None = None
    domain: Any = field(default=None, repr=False)  # kernel.domain.Domain, loaded once
    _matcher: Matcher | None = field(default=None, repr=False)

    def need_engine(self) -> EngineApi:
        if self.engine is None:
            raise HTTPException(503, "this server runs without the engine (read-only API)")
        return self.engine

    def need_operations(self) -> PeopleActions:
        if self.operations is None:
            raise HTTPException(503, "this server runs without the engine (read-only API)")
        return self.operations

    def matcher(self) -> Matcher:
        """One Matcher (calibration loaded once) over the engine's graph and embedder."""
        if self._matcher is None:
            engine = self.need_engine()
            self._matcher = Matcher(engine.graph, engine.embedder, retry_s=5.0)
        return self._matcher


def services(request: Request) -> Services:
    found: Services = request.app.state.services  # set by create_app
    return found


Svc = Annotated[Services, Depends(services)]


def by_of(principal_name: str, via: str, claimed: str | None) -> str:
    """Who acts: the token's name; only with authentication off may the body say it."""
    if via == "anonymous" and claimed:
        return claimed
    return principal_name
