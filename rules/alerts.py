"""Which Alertmanager alerts mendloop takes, and the catalog series each one drives.

``alerts.yaml`` in the root of a site or pack (composed like the other parts, docs/SITES.md;
``MENDLOOP_ALERTS_FILE`` names one file instead):

    alerts:
      - alertname: NodeFilesystemAlmostFull   # the alert's ``alertname`` label
        match: {severity: critical}           # optional: PromQL label matchers, all must hold
        series: alert_disk_full               # a catalog entry: 1 while firing, 0 resolved
        target_label: instance                # the label naming the target (default instance)

An alert becomes a point of its catalog series for its target, so the rest of the loop
needs nothing new: a rule on that series (``series: alert_disk_full``, the site's rules)
names the fault and the component (the entry's subsystem), opens the incident like any
rule, and verification reads the series: the resolved alert (0, after the fix) is what
makes it healthy. An alert no entry takes is kept as *unmapped* (loop/alertmanager.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from kernel.errors import RuleFileError, validation_reasons
from rules.catalog import Catalog
from rules.selectors import LABEL_NAME, Matcher, parse_matchers
from rules.source import entry_name, line_of, read_yaml_list

ALERTNAME = r"^[A-Za-z0-9_:.-]{1,200}$"


class AlertMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alertname: str = Field(pattern=ALERTNAME)
    match: dict[str, str | dict[str, str]] | None = None
    series: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    target_label: str = Field("instance", max_length=128)
    _matchers: tuple[Matcher, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _parsed(self) -> AlertMapping:
        if not LABEL_NAME.fullmatch(self.target_label):
            raise ValueError(f"target_label {self.target_label!r} is not a label name")
        self._matchers = parse_matchers(self.match)
        return self

    def accepts(self, labels: Mapping[str, str]) -> bool:
        return all(m.accepts(labels) for m in self._matchers)


class AlertMap:
    """alertname -> its mappings; ``find`` is pure."""

    def __init__(self, mappings: list[AlertMapping]) -> None:
        self.mappings = tuple(mappings)
        self._by_name: dict[str, list[AlertMapping]] = {}
        for mapping in mappings:
            self._by_name.setdefault(mapping.alertname, []).append(mapping)

    def find(self, labels: Mapping[str, str]) -> tuple[AlertMapping | None, str | None]:
        """(the one mapping that takes the alert, None) or (None, the reason it is
        unmapped: ``missing_labels`` (no alertname), ``unknown_alert``, ``no_match``,
        ``ambiguous_match``)."""
        name = labels.get("alertname")
        if not name:
            return None, "missing_labels"
        candidates = self._by_name.get(name)
        if not candidates:
            return None, "unknown_alert"
        taken = [m for m in candidates if m.accepts(labels)]
        if len(taken) == 1:
            return taken[0], None
        return None, "no_match" if not taken else "ambiguous_match"


def alert_entries(path: Path) -> list[tuple[str, int | None, Any]]:
    """(alertname, line, entry) of each entry of an ``alerts.yaml``; RuleFileError when the
    file cannot be read or has no ``alerts:`` list."""
    text, entries = read_yaml_list(path, "alerts")
    out = []
    for index, entry in enumerate(entries):
        name = entry_name(entry, "alertname", index)
        out.append((name, line_of(text, f"alertname: {name}"), entry))
    return out


def check_mapping(name: str, entry: Any, catalog: Catalog) -> AlertMapping:
    """One entry validated, its series a plain series of ``catalog``; ValueError (the
    reason) otherwise."""
    try:
        mapping = AlertMapping.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(f"alert {name}: {validation_reasons(exc)}") from exc
    spec = catalog.get(mapping.series)
    if spec is None or spec.derivation is not None:
        why = "not in the metric catalog" if spec is None else "a derived series"
        raise ValueError(f"alert {name}: series {mapping.series} is {why}")
    return mapping


def mapping_key(mapping: AlertMapping) -> str:
    """What makes two mappings the same one (a site overrides a pack's by it)."""
    if not mapping.match:
        return mapping.alertname
    return f"{mapping.alertname} {json.dumps(mapping.match, sort_keys=True)}"


def load_alert_map(path: Path, catalog: Catalog) -> AlertMap:
    """Load and check an ``alerts.yaml`` named by MENDLOOP_ALERTS_FILE (a site's own are
    composed by sites/load.py): a bad entry refuses the file with file:line and why."""
    mappings: list[AlertMapping] = []
    for name, line, entry in alert_entries(path):
        try:
            mappings.append(check_mapping(name, entry, catalog))
        except ValueError as exc:
            raise RuleFileError(str(path), line, str(exc)) from exc
    return AlertMap(mappings)
