"""What every source shares: the name mapping hook, target resolution, and the parse
result (samples with their origin, plus the issues that did not become samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from pydantic import ValidationError

from kernel.errors import InvalidSample, validation_reasons
from kernel.ids import is_identifier, loggable
from kernel.models import Sample
from loop.intake import reason_of

NameMap = Callable[[str], str | None]
"""Foreign metric name -> catalog series name; ``None`` means "no catalog name" (an Issue)."""

DEFAULT_TARGET_LABELS: tuple[str, ...] = ("target", "instance")


def identity(name: str) -> str:
    """The default name mapping: foreign names are catalog names already (the twin's are)."""
    return name


def rename(mapping: Mapping[str, str], *, passthrough: bool = True) -> NameMap:
    """A ``NameMap`` from a dict; unmapped names pass through unchanged unless told not to.

    >>> rename({"redis_hit_ratio": "cache_hit_ratio"})("redis_hit_ratio")
    'cache_hit_ratio'
    """
    table = dict(mapping)

    def mapped(name: str) -> str | None:
        return table.get(name, name if passthrough else None)

    return mapped


def resolve_target(labels: Mapping[str, str], target_labels: Sequence[str]) -> str | None:
    """The value of the first of ``target_labels`` that is present and non-empty."""
    for label in target_labels:
        value = labels.get(label)
        if value:
            return value
    return None


@dataclass(frozen=True)
class SampleMapper:
    """How a foreign (name, labels, ts, value) becomes a catalog ``Sample``; one per source.

    The target comes from the first of ``target_labels`` present (copied to ``target``), or
    ``default_target``; with neither the point is refused (``bad_target``), because a sample
    filed under the wrong target would open incidents on the wrong machine. A target that
    is not an identifier (kernel/ids.py) and labels a log could not show are refused too.
    """

    name_map: NameMap = identity
    target_labels: tuple[str, ...] = DEFAULT_TARGET_LABELS
    default_target: str | None = None

    def __post_init__(self) -> None:
        if self.default_target is not None and not is_identifier(self.default_target):
            raise ValueError(f"default target {loggable(self.default_target)} is not an identifier")

    def to_sample(self, name: str, labels: Mapping[str, str], ts: float, value: float) -> Sample:
        """Raise ``InvalidSample`` with a reason the sender can act on."""
        series = self.name_map(name)
        if not series:
            reason = f"metric {name!r} has no catalog name (name mapping)"
            raise InvalidSample(reason, "unknown_metric")
        target = resolve_target(labels, self.target_labels) or self.default_target
        if target is None:
            wanted = ", ".join(self.target_labels)
            raise InvalidSample(f"no target: none of the labels {wanted} is set", "bad_target")
        if not math.isfinite(value):
            raise InvalidSample(f"value {value} is not a finite number")
        try:
            return Sample(series=series, labels={**labels, "target": target}, ts=ts, value=value)
        except ValidationError as exc:
            raise InvalidSample(validation_reasons(exc), reason_of(exc)) from exc


class Origin(NamedTuple):
    """Where a sample came from in its payload, so a rejection can point back at it;
    ``series`` names the raw series of a pull (its labels), so a poller that reads the same
    point twice can tell it from a new one."""

    line: int | None = None
    metric: str | None = None
    series: str | None = None


@dataclass(frozen=True)
class Issue:
    """Something in the payload that did not become a sample: where, why, how many points.

    ``error`` is for people (values quoted and escaped, never raw); ``reason`` is the
    counter it is booked under, the monitor's vocabulary (``invalid``, ``unknown_metric``,
    ``bad_target``, ``bad_labels``) plus ``parse_error``, ``unsupported`` (a metric type no
    sample can stand for) and ``bad_unit``.
    """

    error: str
    reason: str = "invalid"
    line: int | None = None
    metric: str | None = None
    points: int = 1
    point: tuple[str, float] | None = field(default=None, repr=False)  # (raw series, ts)

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"metric {self.metric!r}"
        return f"{where}: {self.error}"


@dataclass(frozen=True)
class ParseResult:
    """Samples in payload order, each with its ``Origin`` (parallel tuples), and the issues."""

    samples: tuple[Sample, ...] = ()
    origins: tuple[Origin, ...] = field(default=(), repr=False)
    issues: tuple[Issue, ...] = ()

    @property
    def rejected_points(self) -> int:
        return sum(issue.points for issue in self.issues)

    def __add__(self, other: ParseResult) -> ParseResult:
        return ParseResult(
            self.samples + other.samples,
            self.origins + other.origins,
            self.issues + other.issues,
        )


class ResultBuilder:
    """Accumulates samples and issues while a parser walks its payload."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.origins: list[Origin] = []
        self.issues: list[Issue] = []

    def add(self, sample: Sample, origin: Origin) -> None:
        self.samples.append(sample)
        self.origins.append(origin)

    def convert(
        self,
        mapper: SampleMapper,
        name: str,
        labels: Mapping[str, str],
        ts: float,
        value: float,
        origin: Origin,
    ) -> bool:
        """Map one point and keep it, or record why not; True when it became a sample."""
        try:
            sample = mapper.to_sample(name, labels, ts, value)
        except InvalidSample as exc:
            point = (origin.series, ts) if origin.series is not None else None
            self.issues.append(
                Issue(str(exc), exc.reason, origin.line, origin.metric or name, 1, point)
            )
            return False
        self.add(sample, origin)
        return True

    def issue(
        self,
        error: str,
        reason: str = "invalid",
        *,
        line: int | None = None,
        metric: str | None = None,
        points: int = 1,
    ) -> None:
        self.issues.append(Issue(error, reason, line=line, metric=metric, points=points))

    def result(self) -> ParseResult:
        return ParseResult(tuple(self.samples), tuple(self.origins), tuple(self.issues))
