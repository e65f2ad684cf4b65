"""What a fix will do, frozen once by decide: the remediation plan and how it is verified.

    plan = planner.resolve(incident, "sol-cache-scale-out")   # loop/planner.py
    plan.playbook, plan.extra_vars, plan.check_mode, plan.risk, plan.blast_radius
    plan.preconditions                     # (Condition, ...) that must hold before the run
    plan.verification.hold_s               # VerificationPlan: series, conditions, hold, ...

The executor, verification and rollback read only the plan: the solution library is read
once, when the plan is made (decide, a person's proposal, and the check just before an
approved fix runs, which compares the plan of that moment with the approved one).
``Condition`` (``cache_hit_ratio >= 0.8``, ``series healthy``) is the library's syntax
for preconditions and verification conditions.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from kernel.models import Frozen

Scalar = str | int | float | bool
Risk = Literal["low", "medium", "high"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_CONDITION = re.compile(
    r"^\s*(?P<series>[A-Za-z_][A-Za-z0-9_]*)\s+"
    r"(?:(?P<word>healthy|unhealthy)|(?P<op><=|>=|==|!=|<|>)\s*(?P<value>-?[0-9.]+(?:e-?[0-9]+)?))"
    r"\s*$"
)


class Condition(Frozen):
    """``series op number`` (``cache_hit_ratio >= 0.8``) or ``series healthy|unhealthy``
    (within the catalog's warn threshold or not)."""

    series: str
    op: Literal["<", "<=", ">", ">=", "==", "!=", "healthy", "unhealthy"]
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        m = _CONDITION.match(text)
        if m is None:
            raise ValueError(
                f"condition {text!r}: expected 'series <op> number' (op one of "
                "< <= > >= == !=) or 'series healthy' / 'series unhealthy'"
            )
        if m["word"]:
            return cls(series=m["series"], op=m["word"])
        return cls(series=m["series"], op=m["op"], value=float(m["value"]))

    def holds(self, value: float | None, is_healthy: Callable[[float], bool] | None) -> bool:
        """Pure: missing data never satisfies a condition."""
        if value is None:
            return False
        if self.op == "healthy":
            return bool(is_healthy and is_healthy(value))
        if self.op == "unhealthy":
            return bool(is_healthy is not None and not is_healthy(value))
        assert self.value is not None
        return _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.series} {self.op}" + (f" {self.value:g}" if self.value is not None else "")


class VerificationPlan(Frozen):
    """What must hold after the run, continuously for ``hold_s``, before ``deadline_s``:
    every series in ``series`` within its warn threshold (those that opened the incident
    and the solution's own), every condition, the SQI at least ``sqi_min`` unless only
    other components than ``component`` hold it down."""

    series: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    hold_s: float = Field(gt=0)
    deadline_s: float = Field(gt=0)
    sqi_min: float | None = Field(None, ge=0, le=100)
    component: str | None = None


class RemediationPlan(Frozen):
    """Everything that will run for one incident, resolved once from the solution library:
    the playbook and its rollback with the extra vars rendered and validated, whether it
    has a dry run (check mode), its risk (the library's: the one source of risk), on how
    many targets it may run at once, what must hold before and how it is verified."""

    incident_id: str
    solution_id: str
    title: str
    target: str
    playbook: str
    rollback_playbook: str | None = None
    pack: str = ""  # whose playbooks/ holds them (the site's pack or the site itself)
    hosts: tuple[str, ...] = ()  # the inventory hosts the run is limited to (--limit)
    check_mode: bool = True
    risk: Risk
    blast_radius: int = Field(1, ge=1)
    preconditions: tuple[Condition, ...] = ()
    extra_vars: dict[str, Scalar] = Field(default_factory=dict)
    verification: VerificationPlan
