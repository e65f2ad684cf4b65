"""The remediation plan of a chosen solution: the library entry resolved once, for one
incident, into everything that will run and how it is verified (kernel/plan.py).

    planner = Planner(estate, verify_hold_s=5.0, verify_timeout_s=600.0)
    plan = planner.resolve(incident, "sol-cache-scale-out")   # KnowledgeError: cannot be

The library (loop/solutions.py) is the one source of what runs and of risk; the graph's
Solution node is a copy made at seed time, never read for a plan. What used to be looked
up again at every step (check mode, risk, blast radius, preconditions, the verification
spec with its fallbacks to the daemon's settings) is decided here, once.

A solution's parameters get their values here (docs/SITES.md, parameter sources), each
typed and validated by its parameter (loop/solutions.py ``Parameter.coerce``) and passed
to Ansible only as unsafe extra vars (loop/extravars.py): the label of the series that
fired (``from_label``), the target host's inventory variable (``from_inventory``), the
site's ``defaults``, the parameter's own default. A parameter left without a value stops
the plan with a clear reason. Only the parameters a solution declares are passed, and
``target``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel.errors import KnowledgeError
from kernel.models import Finding, RCAReport
from kernel.plan import RemediationPlan, Scalar, VerificationPlan
from loop.estate import Estate
from loop.solutions import SolutionSpec


@dataclass(frozen=True)
class Subject:
    """What a plan is made for: the incident, its target, what opened it and its report."""

    incident_id: str
    target: str
    findings: Sequence[Finding] = ()
    report: RCAReport | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # of the series that fired


def parameter_values(
    spec: SolutionSpec,
    labels: Mapping[str, str],
    host_vars: Mapping[str, Any],
    defaults: Mapping[str, Scalar],
) -> tuple[dict[str, Any], list[str]]:
    """The value of each parameter from its sources, first found wins (label, inventory,
    site default; the parameter's own default is filled in by ``render_vars``), and the
    names of those that have none. Pure; the values are validated by ``render_vars``."""
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name, param in spec.parameters.items():
        if param.from_label is not None and param.from_label in labels:
            values[name] = labels[param.from_label]
        elif param.from_inventory is not None and param.from_inventory in host_vars:
            values[name] = host_vars[param.from_inventory]
        elif name in defaults:
            values[name] = defaults[name]
        elif param.default is None:
            missing.append(name)
    return values, missing


class Planner:
    def __init__(self, estate: Estate, verify_hold_s: float, verify_timeout_s: float) -> None:
        self.estate = estate
        self.library = estate.library
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
        hosts = self.estate.hosts_for(subject.target)
        if not hosts:
            raise KnowledgeError(
                f"{spec.id}: target {subject.target} has no inventory host to run on (the "
                "site's domain.yaml targets hosts:, an inventory host or group of its name, "
                "or default_hosts)"
            )
        values, missing = parameter_values(
            spec, subject.labels, self._host_vars(hosts), self.estate.defaults
        )
        if missing:
            raise KnowledgeError(
                f"{spec.id}: parameter(s) {', '.join(missing)} have no value for target "
                f"{subject.target} (no label, inventory variable or site default)"
            )
        try:  # the library's typed parameters, defaults filled in and validated
            extra_vars = spec.render_vars({"target": subject.target}, values)
        except ValueError as exc:
            raise KnowledgeError(f"{spec.id}: bad parameters: {exc}") from exc
        return RemediationPlan(
            incident_id=subject.incident_id,
            solution_id=spec.id,
            title=spec.title,
            target=subject.target,
            playbook=spec.playbook,
            rollback_playbook=spec.rollback_playbook,
            pack=spec.pack,
            hosts=hosts,
            check_mode=spec.check_mode,
            risk=spec.risk,
            blast_radius=spec.blast_radius,
            preconditions=spec.preconditions,
            extra_vars=extra_vars,
            verification=self._verification(subject, spec),
        )

    def _host_vars(self, hosts: tuple[str, ...]) -> Mapping[str, Any]:
        """The inventory variables of the target's host (its first, when several)."""
        return self.estate.host_vars(hosts[0]) if hosts else {}

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
