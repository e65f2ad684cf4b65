"""What a person approves and who did: the approval plan (bound by its hash), the approval,
and whether automatic fixes are paused.

    plan = ApprovalPlan.of(remediation, hosts=("localhost",), dry_run=run, diff=diff)
    plan.plan_hash                      # 64 hex digits
    Approval(by="alice", plan_hash=plan.plan_hash)
    AutomationStatus().pause_for("pm-site-1")     # None: not paused
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal

from pydantic import Field

from kernel.models import Frozen, PlaybookRun, RunStatus, utcnow
from kernel.plan import Condition, RemediationPlan, Scalar, VerificationPlan

# what an ApprovalPlan's hash covers: the remediation plan (everything that would run, and
# how it is checked before and after), the inventory it runs on, and what its dry run said
_PLAN_HASHED = (
    "incident_id",
    "solution_id",
    "risk",
    "target",
    "playbook",
    "extra_vars",
    "hosts",
    "check_mode",
    "check_status",
    "changed",
    "changed_tasks",
    "diff",
    "rollback_playbook",
    "rollback_vars",
    "blast_radius",
    "preconditions",
    "verification",
)


class ApprovalPlan(Frozen):
    """The exact plan a person approves: the incident's RemediationPlan (kernel/plan.py:
    the playbook with its extra vars, the rollback, risk, blast radius, preconditions and
    verification), the hosts it runs on and what its dry run (check mode) would change.
    ``plan_hash`` (sha256 of the canonical JSON of the fields in ``_PLAN_HASHED``) binds an
    approval to it: when the plan recomputed just before the run (the remediation plan
    resolved again, a fresh dry run) hashes differently, the approval is void.

        plan = ApprovalPlan.of(remediation, hosts=("localhost",), dry_run=run, diff=diff)
        plan.plan_hash                      # 64 hex digits
        plan.differences(newer)             # ["extra_vars.target: 'a' -> 'b'", ...]

    A plan stored before the remediation plan existed has no ``blast_radius``,
    ``preconditions`` or ``verification``; it loads, and its hash stays what it was.
    """

    incident_id: str
    solution_id: str
    title: str
    risk: Literal["low", "medium", "high"]
    target: str
    playbook: str
    extra_vars: dict[str, Scalar] = Field(default_factory=dict)
    hosts: tuple[str, ...] = Field(description="the inventory the playbook runs against")
    check_mode: bool = Field(description="the playbook supports a dry run (check mode)")
    check_status: RunStatus | None = Field(None, description="the dry run's outcome (None: none)")
    changed: int = Field(0, description="tasks the dry run reports as changing something")
    changed_tasks: tuple[str, ...] = ()
    diff: tuple[str, ...] = Field(default=(), description="the dry run's --diff, per task")
    rollback_playbook: str | None = None
    rollback_vars: dict[str, Scalar] = Field(default_factory=dict)
    requested_by: str = "mendloop"
    blast_radius: int | None = Field(None, description="targets it may run on at once")
    preconditions: tuple[Condition, ...] = Field((), description="must hold before the run")
    verification: VerificationPlan | None = Field(None, description="how the fix is verified")
    created_at: datetime = Field(default_factory=utcnow)
    plan_hash: str = Field(description="sha256 of the canonical JSON of what would run")

    @classmethod
    def of(
        cls,
        plan: RemediationPlan,
        hosts: tuple[str, ...],
        dry_run: PlaybookRun | None,
        diff: tuple[str, ...] = (),
        requested_by: str = "mendloop",
    ) -> ApprovalPlan:
        """What a person is shown for ``plan``: all of it, the hosts, and its dry run
        (None: the playbook has no check mode)."""
        return cls.build(
            incident_id=plan.incident_id,
            solution_id=plan.solution_id,
            title=plan.title,
            risk=plan.risk,
            target=plan.target,
            playbook=plan.playbook,
            extra_vars=plan.extra_vars,
            hosts=hosts,
            check_mode=plan.check_mode,
            check_status=dry_run.status if dry_run else None,
            changed=dry_run.changed if dry_run else 0,
            changed_tasks=dry_run.changed_tasks if dry_run else (),
            diff=diff,
            rollback_playbook=plan.rollback_playbook,
            rollback_vars=plan.extra_vars if plan.rollback_playbook else {},
            requested_by=requested_by,
            blast_radius=plan.blast_radius,
            preconditions=plan.preconditions,
            verification=plan.verification,
        )

    @staticmethod
    def digest(fields: dict[str, object]) -> str:
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def build(cls, **fields: object) -> ApprovalPlan:
        """A plan with its hash computed from the hashed fields (validated first)."""
        draft = cls.model_validate({**fields, "plan_hash": ""})
        return draft.model_copy(update={"plan_hash": cls.digest(draft.hashed())})

    def hashed(self) -> dict[str, object]:
        data = self.model_dump(mode="json")
        return {name: data[name] for name in _PLAN_HASHED}

    def differences(self, other: ApprovalPlan) -> list[str]:
        """What changed from this plan to ``other``, one line per field (for the note)."""
        mine, theirs = self.hashed(), other.hashed()
        lines = []
        for name in _PLAN_HASHED:
            a, b = mine[name], theirs[name]
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                for key in sorted(set(a) | set(b)):
                    if a.get(key) != b.get(key):
                        lines.append(f"{name}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
            else:
                lines.append(f"{name}: {_short(a)} -> {_short(b)}")
        return lines


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Approval(Frozen):
    """Who approved which plan (by its hash) and when; stored on the incident."""

    by: str
    comment: str = ""
    plan_hash: str | None = Field(description="the plan current when it was approved")
    at: datetime = Field(default_factory=utcnow)


class TargetPause(Frozen):
    target: str
    by: str
    reason: str = ""
    since: datetime


class AutomationStatus(Frozen):
    """Whether automatic fixes may run: paused everywhere (``paused``, by whom, since when,
    why) and/or on some targets. While paused, a fix that would run on its own waits for
    an approval instead; approved fixes still run."""

    paused: bool = False
    by: str | None = None
    since: datetime | None = None
    reason: str = ""
    targets: tuple[TargetPause, ...] = ()

    def pause_for(self, target: str) -> str | None:
        """Why automatic fixes on ``target`` are paused now (None: they are not)."""
        if self.paused:
            why = f": {self.reason}" if self.reason else ""
            return f"automation paused everywhere by {self.by}{why}"
        for pause in self.targets:
            if pause.target == target:
                why = f": {pause.reason}" if pause.reason else ""
                return f"automation paused on {target} by {pause.by}{why}"
        return None
