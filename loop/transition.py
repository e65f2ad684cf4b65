"""A move of an incident along one edge of the state machine, with what the step produced.

    Transition(State.analyzed, "root cause x", report=report, fault="x")
    Transition.escalate("no rule explains the findings")
    Transition(State.awaiting_approval, "void", approval=None)   # None clears a field
    store.apply(incident_id, transition)                          # loop/store.py

Each step of the loop (loop/steps/) returns one; the engine applies it (loop/moves.py).
A payload field left at ``KEEP`` keeps what the incident has; ``None`` clears it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Final, TypeAlias, TypeVar

from pydantic import BaseModel

from kernel.approval import Approval, ApprovalPlan
from kernel.models import Decision, Execution, RCAReport, Verification
from kernel.plan import RemediationPlan
from kernel.state import State


class Keep(Enum):
    """Leave the incident's field as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
T = TypeVar("T")
Field: TypeAlias = T | Keep | None  # a payload value, KEEP, or None (clear it)

PAYLOAD = ("report", "decision", "remediation", "execution", "verification", "plan", "approval")


@dataclass(frozen=True)
class Transition:
    """To ``state`` with ``note`` (the timeline line); ``reason`` is what the incident
    shows as why it ended or waits; ``fault`` the root cause named."""

    state: State
    note: str
    report: Field[RCAReport] = KEEP
    decision: Field[Decision] = KEEP
    remediation: Field[RemediationPlan] = KEEP
    execution: Field[Execution] = KEEP
    verification: Field[Verification] = KEEP
    plan: Field[ApprovalPlan] = KEEP
    approval: Field[Approval] = KEEP
    fault: str | None = None
    reason: str | None = None

    @classmethod
    def escalate(
        cls,
        reason: str,
        *,
        execution: Field[Execution] = KEEP,
        verification: Field[Verification] = KEEP,
        plan: Field[ApprovalPlan] = KEEP,
    ) -> Transition:
        """To a person, with why (the note and the reason are the same words)."""
        return cls(
            State.escalated,
            reason,
            execution=execution,
            verification=verification,
            plan=plan,
            reason=reason,
        )

    def payload(self) -> dict[str, BaseModel | None]:
        """The payload fields to store (KEEP left out; None clears)."""
        return {
            f.name: value
            for f in fields(self)
            if f.name in PAYLOAD and (value := getattr(self, f.name)) is not KEEP
        }
