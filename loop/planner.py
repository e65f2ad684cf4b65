"""The remediation plan of a chosen solution: the library entry resolved once, for one
incident, into everything that will run and how it is verified (kernel/plan.py).

    planner = Planner(library, base_vars={"twin_url": url}, settings=settings)
    plan = planner.resolve(incident, "sol-cache-scale-out")   # KnowledgeError: cannot be

The library (loop/solutions.py) is the one source of what runs and of risk; the graph's
Solution node is a copy made at seed time, never read for a plan. What used to be looked
up again at every step (check mode, risk, blast radius, preconditions, the verification
spec with its fallbacks to the daemon's settings) is decided here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kernel.errors import KnowledgeError
from kernel.models import Finding, RCAReport
from kernel.plan import RemediationPlan, Scalar, VerificationPlan
from loop.solutions import SolutionSpec


@dataclass(frozen=True)
class Subject:
    """What a plan is made for: the incident, its target, what opened it and its report."""

    incident_id: str
    target: str
    findings: Sequence[Finding] = ()
    report: RCAReport | None = None


class Planner:
    def __init__(
        self,
        library: Mapping[str, SolutionSpec],
        base_vars: Mapping[str, Scalar],
        verify_hold_s: float,
        verify_timeout_s: float,
    ) -> None:
        self.library = library
        self.base_vars = dict(base_vars)  # twin_url, ...: every playbook gets them
        self.verify_hold_s = verify_hold_s
        self.verify_timeout_s = verify_timeout_s

    def spec(self, solution_id: str) -> SolutionSpec:
        spec = self.library.get(solution_id)
        if spec is None:
            raise KnowledgeError(f"no solution {solution_id} in the library")
        return spec

    def resolve(self, subject: Subject, solution_id: str) -> RemediationPlan:
        """The plan of ``solution_id`` for ``subject`` now; KnowledgeError when the library
        lacks it or its parameters do not render."""
        spec = self.spec(solution_id)
        try:  # the library's typed parameters, defaults filled in and validated
            extra_vars = spec.render_vars({**self.base_vars, "target": subject.target})
        except ValueError as exc:
            raise KnowledgeError(f"{spec.id}: bad parameters: {exc}") from exc
        return RemediationPlan(
            incident_id=subject.incident_id,
            solution_id=spec.id,
            title=spec.title,
            target=subject.target,
            playbook=spec.playbook,
            rollback_playbook=spec.rollback_playbook,
            check_mode=spec.check_mode,
            risk=spec.risk,
            blast_radius=spec.blast_radius,
            preconditions=spec.preconditions,
            extra_vars=extra_vars,
            verification=self._verification(subject, spec),
        )

    def _verification(self, subject: Subject, spec: SolutionSpec) -> VerificationPlan:
        """The series that opened the incident and the solution's own, its conditions and
        SQI floor; hold and deadline from the solution, bounded by the daemon's settings."""
        wanted = spec.verification
        series = {e.series for f in subject.findings for e in f.evidence} | set(wanted.metrics)
        top = subject.report.top if subject.report is not None else None
        return VerificationPlan(
            series=tuple(sorted(series)),
            conditions=wanted.conditions,
            hold_s=wanted.hold_s or self.verify_hold_s,
            deadline_s=min(wanted.deadline_s, self.verify_timeout_s),
            sqi_min=wanted.sqi_min,
            component=top.component if top is not None else None,
        )
