"""The lab's view of a running daemon (mendloop/servicelab.py): its incidents, read from
its own database (typed), approvals through its REST API as a person gives them, and one
fault run measured from the injection to the incident's end.

    outcome = run_fault(daemon, "redis-1", inject=lambda: redis.kill())
    assert outcome.state == "resolved" and outcome.verification == "passed"
    outcome.detection_s, outcome.mttr_s      # injection -> opened, injection -> resolved
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from api.auth import Role, TokenStore
from kernel.state import State
from loop.store import IncidentStore, IncidentView
from mendloop.labproc import LabError, Proc


def issue_token(database_url: str) -> str:
    """An admin token in the daemon's database (created, and migrated, before it starts)."""
    store = IncidentStore(database_url)
    try:
        return TokenStore(store.engine).create("servicelab", Role.admin, by="servicelab").token
    finally:
        store.engine.dispose()


class Daemon:
    """A `mendloop run` child of the lab: its URL, token and incidents."""

    def __init__(self, proc: Proc, token: str, database_url: str) -> None:
        self.proc = proc
        self.url = proc.url
        self.token = token
        self.store = IncidentStore(database_url)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", headers=self.headers, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def incidents(self, target: str) -> list[IncidentView]:
        """The target's incidents, oldest first."""
        return sorted(self.store.list(target=target, limit=1000), key=lambda i: i.opened_at)

    def wait_opened(self, target: str, known: set[str], timeout: float) -> IncidentView:
        """The first incident of ``target`` not in ``known``; LabError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [i for i in self.incidents(target) if i.id not in known]
            if fresh:
                return fresh[0]
            self._alive("an incident on " + target)
            time.sleep(0.2)
        raise LabError(f"no incident opened on {target} in {timeout:.0f} s\n{self.proc.log_tail()}")

    def wait_settled(self, incident_id: str, timeout: float) -> IncidentView:
        """Until the incident ended or waits for a person."""
        deadline = time.monotonic() + timeout
        while True:
            incident = self.store.get(incident_id)
            if incident is not None and (
                incident.terminal or incident.state == State.awaiting_approval
            ):
                return incident
            if time.monotonic() > deadline:
                state = incident.state if incident else "missing"
                raise LabError(f"incident {incident_id} still {state} after {timeout:.0f} s")
            self._alive(f"incident {incident_id}")
            time.sleep(0.2)

    def approve(self, incident_id: str) -> None:
        """As a person does: the plan they looked at, by its hash."""
        base = f"{self.url}/v1/incidents/{incident_id}"
        plan = httpx.get(f"{base}/plan", headers=self.headers, timeout=30)
        body: dict[str, Any] = {"by": "servicelab", "comment": "lab approval"}
        if plan.status_code == 200:
            body["plan_hash"] = plan.json()["plan_hash"]
        httpx.post(
            f"{base}/approve", json=body, headers=self.headers, timeout=30
        ).raise_for_status()

    def _alive(self, what: str) -> None:
        if not self.proc.alive:
            raise LabError(f"the daemon exited while waiting for {what}:\n{self.proc.log_tail()}")

    def close(self) -> None:
        self.store.engine.dispose()


@dataclass(frozen=True)
class FaultOutcome:
    """One injected fault, what the loop made of it, and how long each part took."""

    target: str
    incident_id: str
    fault: str | None
    state: str
    reason: str
    verification: str | None
    solution: str | None
    approved: bool
    detection_s: float  # injection -> incident opened
    mttr_s: float | None  # injection -> resolved (None: not resolved)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolved_at(incident: IncidentView) -> float | None:
    times = [t.at.timestamp() for t in incident.timeline if t.to_state == State.resolved]
    return times[-1] if times else None


def run_fault(
    daemon: Daemon,
    target: str,
    inject: Callable[[], None],
    detect_timeout: float = 120.0,
    settle_timeout: float = 300.0,
    approve: bool = True,
    during: Callable[[IncidentView], None] | None = None,
) -> FaultOutcome:
    """Inject, wait for the new incident of ``target`` and its end (approving once when it
    asks, if ``approve``); ``during`` is called with the incident after it opened (e.g. to
    resolve an alert the way Prometheus would)."""
    known = {i.id for i in daemon.incidents(target)}
    injected = time.time()
    inject()
    incident = daemon.wait_opened(target, known, detect_timeout)
    if during is not None:
        during(incident)
    settled = daemon.wait_settled(incident.id, settle_timeout)
    approved = False
    if settled.state == State.awaiting_approval and approve:
        daemon.approve(incident.id)
        approved = True
        settled = daemon.wait_settled(incident.id, settle_timeout)
    done = resolved_at(settled)
    decision = settled.decision
    return FaultOutcome(
        target=target,
        incident_id=settled.id,
        fault=settled.fault,
        state=settled.state.value,
        reason=settled.reason,
        verification=settled.verification.status.value if settled.verification else None,
        solution=decision.solution_id if decision else None,
        approved=approved,
        detection_s=round(settled.opened_at.timestamp() - injected, 2),
        mttr_s=round(done - injected, 2) if done is not None else None,
    )
