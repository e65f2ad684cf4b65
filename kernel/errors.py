"""One exception tree for mendloop.

    MendloopError
     ├── ConfigError            settings that cannot work (bad URL, unsafe default in production)
     ├── InvalidSample          a sample that is rejected at the door (unknown metric, NaN, type)
     ├── Overloaded             intake is full; retry later (back-pressure, never a silent drop)
     ├── StoreUnavailable       the SQL store is down; the sender should retry (HTTP 503)
     ├── RuleFileError          a rule file refused whole, with file:line and the reason
     ├── GraphUnavailable       Neo4j cannot be reached or refuses our credentials
     ├── KnowledgeError         knowledge content that does not hold together (unknown solution)
     ├── Neo4jLauncherError     the local Neo4j could not be built, started or stopped
     ├── PlaybookError          a playbook that is missing or has bad metadata
 ├── SiteError              a site that does not hold together (every problem, file:line)
     ├── IllegalTransition      an incident asked to move along an edge the state machine lacks
     ├── PlanChanged            an approval named a plan hash that is no longer the incident's plan
     ├── PlanHashRequired       an approval that names no plan hash while the incident has a plan
     └── ApprovalRefused        an approval the rules forbid (two-person rule for high risk)

Outcomes of loop stages (a failed playbook, a failed verification) are *data*, recorded on
the incident, never exceptions: these are for inputs and infrastructure.
"""

from __future__ import annotations

from pydantic import ValidationError


class MendloopError(Exception):
    """Base of every error mendloop raises on purpose."""


class ConfigError(MendloopError):
    pass


class InvalidSample(MendloopError):
    """``reason`` is the counter it is booked under (unknown_metric, invalid, too_old, ...)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(message)


class Overloaded(MendloopError):
    """Intake is full: the caller should retry after ``retry_after_s`` (HTTP 429)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class StoreUnavailable(MendloopError):
    """The SQL store is down (``loop.db.engine.store_outage``) and what was sent is not
    taken: the sender should retry after ``retry_after_s`` (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class RuleFileError(MendloopError):
    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class GraphUnavailable(MendloopError):
    def __init__(self, uri: str, cause: str) -> None:
        self.uri = uri
        super().__init__(
            f"Neo4j is not reachable at NEO4J_URI={uri} ({cause}). "
            "Start the local one with `mendloop neo4j start`, or point NEO4J_URI, "
            "NEO4J_USER and NEO4J_PASSWORD at a running Neo4j 5."
        )


class KnowledgeError(MendloopError):
    pass


class Neo4jLauncherError(MendloopError):
    pass


class PlaybookError(MendloopError):
    pass


class SiteError(MendloopError):
    """A site (or a pack it includes) refused: ``problems`` are every ``file:line: reason``."""

    def __init__(self, site: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(problems)
        super().__init__(f"site {site} refused ({len(problems)} problem(s)):\n{shown}")


class IllegalTransition(MendloopError):
    pass


class PlanChanged(MendloopError):
    """The approver saw another plan than the incident's current one (its hash differs):
    they must look at the new plan (``Engine.plan``) and approve that one."""

    def __init__(self, message: str, current_hash: str | None) -> None:
        self.current_hash = current_hash
        super().__init__(message)


class PlanHashRequired(MendloopError):
    """An approval must name the plan it approves (``current_hash``: the one to look at)."""

    def __init__(self, message: str, current_hash: str) -> None:
        self.current_hash = current_hash
        super().__init__(message)


class ApprovalRefused(MendloopError):
    """Who approves may not: the requester of a high-risk fix (two-person rule)."""


def validation_reasons(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``field.sub: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
