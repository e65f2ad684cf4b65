"""What crosses the monitor's door: the intake's typed results, the validation of one
sample, and the reasons every refusal is counted under.

    sample = parse_sample({"series": "cache_hit_ratio", "labels": {"target": "a"},
                           "ts": 1.7e9, "value": 0.93}, catalog)   # or InvalidSample(reason)
    IngestResult(accepted, late, duplicate, rejected=(Rejection(index, error, reason), ...))

Kept apart from loop/monitor.py (which keeps the windows and the counters) so the
vocabulary is defined once and read by the API, the sources and the benchmarks alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

import numpy as np
from pydantic import ValidationError

from kernel.config import Settings
from kernel.errors import InvalidSample, validation_reasons
from kernel.ids import label_problem
from kernel.models import Sample
from loop.windows import REFUSALS, Limits
from rules.catalog import Catalog
from rules.selectors import identity_of

COUNTED = (
    "accepted",
    "late",
    "duplicate",
    "unknown_metric",
    "invalid",
    "bad_target",
    "bad_labels",
    "no_catalog_match",
    "ambiguous_match",
    "label_conflict",
    "too_old",
    "in_future",
    *REFUSALS,
    "oversized_batch",
    "shed_overload",
    "expired_series",
    # refused by a source before the monitor saw them (booked with the push: Monitor.book)
    "parse_error",
    "unsupported",
    "bad_unit",
)
"""Every reason ``/v1/intake`` shows (zero or not); any other a source books shows too."""
LABEL_REASONS = ("bad_target", "bad_labels")
LIMIT_SETTINGS = ("max_series", "max_targets", "max_series_per_token", "max_targets_per_token")
"""The Settings (``MENDLOOP_MAX_SERIES``, ...) that make ``Limits``, in its field order."""


def limits_of(settings: Settings) -> Limits:
    """The intake's cardinality limits from the one Settings object."""
    return Limits(*(getattr(settings, name) for name in LIMIT_SETTINGS))


DEFAULT_LIMITS = Limits(*(Settings.model_fields[name].default for name in LIMIT_SETTINGS))


class Point(NamedTuple):
    """The newest accepted value of one series: what analysis looks at."""

    target: str
    series: str
    ts: float
    value: float


class Latest(Sequence[Point]):
    """The newest point of each series a write touched, kept as columns: analysis reads
    ``keys``/``ts``/``values`` directly (no object per point, loop/analyze.py); anybody
    else iterates it as ``Point``s."""

    __slots__ = ("keys", "slots", "source", "ts", "values")

    def __init__(
        self,
        keys: list[tuple[str, str]],
        ts: np.ndarray,
        values: np.ndarray,
        slots: np.ndarray | None = None,
        source: tuple[object, int] | None = None,
    ) -> None:
        self.keys, self.ts, self.values = keys, ts, values
        # the window slots of the points and (their store, its generation): a slot names
        # the same (target, series) until the generation changes, so a reader may cache by it
        self.slots, self.source = slots, source

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> Point: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Point]: ...
    def __getitem__(self, i: int | slice) -> Point | Sequence[Point]:
        if isinstance(i, slice):
            return Latest(self.keys[i], self.ts[i], self.values[i])  # (no slot cache)
        target, series = self.keys[i]
        return Point(target, series, float(self.ts[i]), float(self.values[i]))

    def __iter__(self) -> Iterator[Point]:
        for (target, series), ts, value in zip(
            self.keys, self.ts.tolist(), self.values.tolist(), strict=True
        ):
            yield Point(target, series, ts, value)

    def targets(self) -> set[str]:
        """The targets of the batch."""
        return {target for target, _ in self.keys}


@dataclass
class Layout:
    """A fixed sequence of (target, series) resolved once to window slots, for sources that
    send the same series every tick (the twin, exporters, benchmarks). ``known``: the
    series is in the catalog and the target an identifier; ``slots`` is negative where a
    known series got no slot (a cardinality limit, see windows.REFUSALS)."""

    targets: tuple[str, ...]
    series: tuple[str, ...]
    known: np.ndarray
    slots: np.ndarray
    generation: int
    valid_target: np.ndarray | None = None


@dataclass(frozen=True)
class Rejection:
    index: int
    error: str
    reason: str = "invalid"


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    late: int
    duplicate: int
    rejected: tuple[Rejection, ...]
    latest: Sequence[Point] = field(repr=False, default=())

    @property
    def stale(self) -> int:
        return self.late + self.duplicate


def parse_sample(raw: Sample | Mapping[str, Any], catalog: Catalog) -> Sample:
    """Validate one incoming sample; raise InvalidSample with a reason a person can act on.

    A ``Sample`` built elsewhere (perhaps without validation, as the twin's fast path does)
    has its labels checked again: the identifier rule holds whatever the door."""
    if not isinstance(raw, Sample | Mapping):
        raise InvalidSample(f"sample must be an object, not {type(raw).__name__}")
    try:
        sample = raw if isinstance(raw, Sample) else Sample.model_validate(raw)
    except ValidationError as exc:
        raise InvalidSample(validation_reasons(exc), reason_of(exc)) from exc
    if isinstance(raw, Sample) and (problem := label_problem(raw.labels)) is not None:
        raise InvalidSample(f"labels: {problem[1]}", problem[0])
    if not catalog.index.knows(sample.series):
        raise InvalidSample(
            f"series: unknown metric {sample.series!r} (not in the catalog)", "unknown_metric"
        )
    return sample


@dataclass(frozen=True)
class Resolved:
    """The samples of a batch that passed, as columns: their index in the batch, the
    target and catalog series each is filed under, its label set, timestamp and value."""

    indices: np.ndarray
    targets: list[str]
    series: list[str]
    identities: list[tuple[tuple[str, str], ...]]
    ts: np.ndarray
    values: np.ndarray


def resolve_samples(
    items: Sequence[Any], catalog: Catalog, now: float, max_age_s: float, max_future_s: float
) -> tuple[Resolved, list[Rejection]]:
    """Each sample of a JSON-ish batch validated on its own (``parse_sample``), filed under
    its catalog series by name and labels, and its time checked against ``now``; what
    fails is a ``Rejection`` with its index and reason."""
    indices: list[int] = []
    targets: list[str] = []
    names: list[str] = []
    identities: list[tuple[tuple[str, str], ...]] = []
    stamps: list[float] = []
    values: list[float] = []
    rejected: list[Rejection] = []
    resolve = catalog.index.resolve
    for index, raw in enumerate(items):
        try:
            sample = parse_sample(raw, catalog)
            resolved = resolve(sample.series, sample.labels)
            too_old, in_future = sample.ts < now - max_age_s, sample.ts > now + max_future_s
            if too_old or in_future:
                raise InvalidSample(
                    f"ts: {sample.ts:.0f} is outside [now - {max_age_s:g} s, "
                    f"now + {max_future_s:g} s]",
                    "too_old" if too_old else "in_future",
                )
        except InvalidSample as exc:
            rejected.append(Rejection(index, str(exc), exc.reason))
            continue
        indices.append(index)
        targets.append(resolved.target)
        names.append(resolved.series)
        identities.append(identity_of(sample.labels))
        stamps.append(sample.ts)
        values.append(sample.value)
    rows = Resolved(
        np.asarray(indices, dtype=np.int64),
        targets,
        names,
        identities,
        np.asarray(stamps, dtype=np.float64),
        np.asarray(values, dtype=np.float64),
    )
    return rows, rejected


def column_checks(
    ts: np.ndarray,
    values: np.ndarray,
    window: tuple[float, float],
    known: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Rejection]]:
    """Pure, vectorised: which samples of columns may be written (``good``) and why the
    others may not, for the column doors. ``window``: the oldest and newest timestamps
    taken; ``known``/``valid``: per sample, a catalog series / an identifier target."""
    finite = np.isfinite(ts) & np.isfinite(values)
    too_old = ts < window[0]
    in_future = ts > window[1]
    known = np.ones(len(ts), dtype=bool) if known is None else known
    valid = known if valid is None else valid
    checks = [
        (~valid, "bad_target", "labels.target: not an identifier (kernel/ids.py)"),
        (valid & ~known, "unknown_metric", "series: unknown metric (not in the catalog)"),
        (known & ~finite, "invalid", "value/ts: must be finite numbers"),
        (known & finite & too_old, "too_old", "ts: older than the window"),
        (known & finite & in_future, "in_future", "ts: in the future"),
    ]
    rejected = [
        Rejection(int(i), text, reason)
        for mask, reason, text in checks
        for i in np.flatnonzero(mask)
    ]
    return known & finite & ~too_old & ~in_future, rejected


def reason_of(exc: ValidationError) -> str:
    """The counter a Sample's validation error is booked under: a label reason (kernel/ids.py)
    when the labels were at fault, else ``invalid``."""
    for error in exc.errors():
        if error["type"] in LABEL_REASONS:
            return str(error["type"])
    return "invalid"


def refusal_texts(limits: Limits) -> dict[str, str]:
    """One message per cardinality refusal, made once (a flood costs no formatting)."""
    later = "; samples of existing series are still taken"
    return {
        "series_limit": f"new series refused: {limits.series} live series (the limit){later}",
        "target_limit": f"new target refused: {limits.targets} live targets (the limit){later}",
        "token_series_limit": (
            f"new series refused: this token created {limits.series_per_owner} live series "
            f"(its limit){later}"
        ),
        "token_target_limit": (
            f"new target refused: this token created {limits.targets_per_owner} live targets "
            f"(its limit){later}"
        ),
    }
