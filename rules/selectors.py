"""Which incoming series a catalog entry takes: its metric name, label matchers and the label
that names the target; and the index every intake resolves a (name, labels) pair through.

    - name: disk_avail_root_bytes            # the catalog series (what rules and analysis see)
      metric: node_filesystem_avail_bytes    # the name it arrives under (default: its name)
      match: {mountpoint: "/", fstype: {"!~": "tmpfs|overlay"}}
      target_label: instance                 # default: the intake's (target, then instance)

    index = SeriesIndex(catalog)
    index.resolve("node_filesystem_avail_bytes", {"instance": "h1", "mountpoint": "/"})
    # -> Resolved(series="disk_avail_root_bytes", target="h1"), or raises InvalidSample with
    #    reason unknown_metric / no_catalog_match / ambiguous_match / bad_target

Matchers are PromQL's: ``=`` and ``!=`` compare (a missing label is ""), ``=~`` and ``!~``
match a regex anchored at both ends (as PromQL does), at most ``MAX_REGEX_LEN`` characters,
compiled when the catalog loads. A catalog entry's own name always resolves to itself with
no matchers (a JSON push names catalog series directly, as the twin does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from kernel.errors import InvalidSample
from kernel.ids import is_identifier, loggable

Op = Literal["=", "!=", "=~", "!~"]
OPS: tuple[Op, ...] = ("=", "!=", "=~", "!~")
MAX_REGEX_LEN = 256
MAX_MATCHERS = 16
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}")
DEFAULT_TARGET_LABELS: tuple[str, ...] = ("target", "instance")
IGNORED_IN_IDENTITY = frozenset({"__name__", "target"})
"""Labels that are not part of a series' identity: the name (resolved to the entry) and the
``target`` label an intake copies from ``instance`` or the entry's ``target_label``."""


@dataclass(frozen=True)
class Matcher:
    """One PromQL label matcher; ``accepts`` is pure."""

    label: str
    op: Op
    value: str
    regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, label: str, spec: object) -> Matcher:
        """``"v"`` (equality) or ``{op: "v"}``; raise ValueError with the reason."""
        if not LABEL_NAME.fullmatch(label):
            raise ValueError(f"match: {label!r} is not a label name")
        if isinstance(spec, str):
            op, value = "=", spec
        elif isinstance(spec, Mapping) and len(spec) == 1:
            ((op, value),) = spec.items()
            if op not in OPS or not isinstance(value, str):
                raise ValueError(f"match {label}: operator must be one of {', '.join(OPS)}")
        else:
            raise ValueError(f"match {label}: a string or one {{operator: value}} pair")
        regex = None
        if op in ("=~", "!~"):
            if len(value) > MAX_REGEX_LEN:
                raise ValueError(f"match {label}: regex longer than {MAX_REGEX_LEN} characters")
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise ValueError(f"match {label}: bad regex ({exc})") from exc
        return cls(label, op, value, regex)  # type: ignore[arg-type]  # op checked in OPS

    def accepts(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.label, "")
        if self.regex is not None:
            found = self.regex.fullmatch(value) is not None
            return found if self.op == "=~" else not found
        return (value == self.value) if self.op == "=" else (value != self.value)

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value!r}"


def parse_matchers(spec: Mapping[str, object] | None) -> tuple[Matcher, ...]:
    """A catalog entry's ``match`` mapping as matchers (ValueError on a bad one)."""
    if not spec:
        return ()
    if len(spec) > MAX_MATCHERS:
        raise ValueError(f"match: at most {MAX_MATCHERS} label matchers")
    return tuple(Matcher.parse(label, value) for label, value in spec.items())


class Selecting(Protocol):
    """What the index reads of a catalog entry (rules.catalog.MetricSpec)."""

    @property
    def name(self) -> str: ...

    @property
    def source_metric(self) -> str: ...

    @property
    def matchers(self) -> tuple[Matcher, ...]: ...

    @property
    def target_label(self) -> str | None: ...


class Resolved(NamedTuple):
    series: str
    target: str


class _Entry(NamedTuple):
    """What resolution reads of an entry, copied once (no model attribute lookups)."""

    name: str
    matchers: tuple[Matcher, ...]
    target_label: str


class SeriesIndex:
    """Incoming (metric name, labels) -> (catalog series, target), or a counted refusal.

    Built once per catalog; ``resolve`` is pure and costs one dict lookup for an entry with
    no matchers (every entry of the twin's catalog)."""

    def __init__(self, entries: Iterable[Selecting]) -> None:
        self._by_metric: dict[str, list[_Entry]] = {}
        names: dict[str, _Entry] = {}
        for spec in entries:
            entry = _Entry(spec.name, spec.matchers, spec.target_label or "target")
            self._by_metric.setdefault(spec.source_metric, []).append(entry)
            names[entry.name] = entry
        # a catalog name that no entry uses as its metric resolves to itself, no matchers
        self._direct = {n: e for n, e in names.items() if n not in self._by_metric}

    def knows(self, name: str) -> bool:
        return name in self._by_metric or name in self._direct

    def resolve(self, name: str, labels: Mapping[str, str]) -> Resolved:
        """Raise ``InvalidSample`` (reason unknown_metric, no_catalog_match, ambiguous_match,
        bad_target) when the point cannot be filed under exactly one catalog series."""
        candidates = self._by_metric.get(name)
        if candidates is None:
            direct = self._direct.get(name)
            if direct is None:
                raise InvalidSample(
                    f"series: unknown metric {loggable(name)} (not in the catalog)",
                    "unknown_metric",
                )
            return Resolved(direct.name, target_of(direct, labels))
        taken = [e for e in candidates if all(m.accepts(labels) for m in e.matchers)]
        if len(taken) == 1:
            return Resolved(taken[0].name, target_of(taken[0], labels))
        if not taken:
            raise InvalidSample(
                f"metric {loggable(name)}: its labels match no catalog entry's matchers",
                "no_catalog_match",
            )
        both = ", ".join(e.name for e in taken[:4])
        raise InvalidSample(
            f"metric {loggable(name)}: its labels match {len(taken)} catalog entries ({both})",
            "ambiguous_match",
        )


def target_of(entry: _Entry, labels: Mapping[str, str]) -> str:
    """The entry's ``target_label`` when it names one, else the intake's ``target``."""
    label = entry.target_label
    target = labels.get(label, "")
    if not is_identifier(target):
        raise InvalidSample(
            f"labels.{label}: {loggable(target)} is not a target identifier "
            f"(catalog entry {entry.name})",
            "bad_target",
        )
    return target


def identity_of(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The label set that identifies a series within its (target, catalog series)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in IGNORED_IN_IDENTITY))
