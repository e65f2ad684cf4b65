"""Cross-references of a composed site, each problem at the line that makes it.

The domain must agree with itself (a fault's component, a component's upstreams, a device
type's component, a target's region and components); a solution needs a rollback (or
``no_rollback: <why>``), a ``verification:`` section, and a source for every parameter;
a case must name a known solution, fault, device type and series; a target must have
inventory hosts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kernel.domain import Domain, target_region
from kernel.models import Case
from kernel.plan import Scalar
from loop.solutions import SolutionSpec
from rules.catalog import Catalog
from sites.compose import Composed, Entry, compose
from sites.model import Inventory, Problem
from sites.read import TARGET_KEYS, Part, case_records
from sites.yamlfile import Doc, read_yaml

_DEVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _at(entry: Entry, reason: str) -> Problem:
    return Problem(entry.origin.file, entry.origin.line, reason)


def domain_of(composed: Composed, regions: set[tuple[str, ...]], problems: list[Problem]) -> Domain:
    """The kernel Domain of the composed entries; what does not fit is a problem."""
    components: dict[str, tuple[str, ...]] = {}
    for e in composed.of("component"):
        ups = (e.value or {}).get("depends_on", []) if isinstance(e.value, dict | None) else None
        if not isinstance(ups, list) or not all(isinstance(u, str) for u in ups):
            problems.append(_at(e, f"component {e.key}: expected {{depends_on: [components]}}"))
            ups = []
        components[e.key] = tuple(ups)
    for e in composed.of("component"):
        for up in components[e.key]:
            if up not in components:
                problems.append(_at(e, f"component {e.key} depends on unknown component {up}"))
    faults: dict[str, str] = {}
    titles: dict[str, str] = {}
    for e in composed.of("fault"):
        spec = e.value if isinstance(e.value, dict) else {}
        component = spec.get("component")
        if not isinstance(component, str) or component not in components:
            problems.append(_at(e, f"fault {e.key}: unknown component {component!r}"))
        faults[e.key] = str(component)
        titles[e.key] = str(spec.get("title", e.key))
    devices: dict[str, str] = {}
    for e in composed.of("device type"):
        value = e.value.get("component") if isinstance(e.value, dict) else e.value
        if not _DEVICE_NAME.match(e.key):
            problems.append(_at(e, f"device type {e.key}: lower-case letters, digits and dashes"))
        if not isinstance(value, str) or value not in components:
            problems.append(_at(e, f"device type {e.key}: unknown component {value!r}"))
        devices[e.key] = str(value)
    environment: dict[str, tuple[str, ...]] = {}
    for e in composed.of("environment parameter"):
        if not isinstance(e.value, list) or not all(isinstance(v, str) for v in e.value):
            problems.append(_at(e, f"environment {e.key}: expected a list of values"))
            continue
        environment[e.key] = tuple(e.value)
    targets: dict[str, tuple[str, ...]] = {}
    for e in composed.of("target"):
        targets[e.key] = _target(e, components, devices, regions, problems)
    nested: dict[str, dict[str, dict[str, list[str]]]] = {}
    for province, city, district, area in sorted(regions):
        nested.setdefault(province, {}).setdefault(city, {}).setdefault(district, []).append(area)
    return Domain(components, faults, titles, devices, environment, nested, targets)


def _target(
    e: Entry,
    components: Mapping[str, Any],
    devices: Mapping[str, str],
    regions: set[tuple[str, ...]],
    problems: list[Problem],
) -> tuple[str, ...]:
    try:
        region = target_region(e.value) if e.value is not None else ()
    except TypeError as exc:
        problems.append(_at(e, f"target {e.key}: {exc}"))
        return ()
    if region and region not in regions:
        problems.append(_at(e, f"target {e.key}: unknown station area {' > '.join(region)}"))
    if isinstance(e.value, dict):
        for key in e.value:
            if key not in TARGET_KEYS:
                problems.append(_at(e, f"target {e.key}: unknown key {key!r}"))
        for name in e.value.get("components") or []:
            if name not in components:
                problems.append(_at(e, f"target {e.key}: unknown component {name!r}"))
        device = e.value.get("device_type")
        if device is not None and device not in devices:
            problems.append(_at(e, f"target {e.key}: unknown device type {device!r}"))
    return region


def target_hosts(
    composed: Composed,
    inventory: Inventory | None,
    default_hosts: tuple[str, ...],
    site_doc: Doc,
    problems: list[Problem],
) -> dict[str, tuple[str, ...]]:
    """Each declared target's explicit ``hosts``; every target must end up with hosts
    that the inventory knows."""
    known = set(inventory.hosts) if inventory is not None else set()
    for host in default_hosts:
        if host not in known:
            problems.append(
                Problem(
                    str(site_doc.path),
                    site_doc.line(("default_hosts",)),
                    f"default host {host!r} is not in the inventory",
                )
            )
    explicit: dict[str, tuple[str, ...]] = {}
    for e in composed.of("target"):
        hosts = e.value.get("hosts") if isinstance(e.value, dict) else None
        if hosts is not None:
            if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
                problems.append(_at(e, f"target {e.key}: hosts must be a list of inventory hosts"))
                continue
            explicit[e.key] = tuple(hosts)
            for host in hosts:
                if host not in known:
                    problems.append(
                        _at(e, f"target {e.key}: host {host!r} is not in the inventory")
                    )
        elif not (
            default_hosts or e.key in known or (inventory is not None and e.key in inventory.groups)
        ):
            problems.append(
                _at(
                    e,
                    f"target {e.key}: no inventory host (name one under hosts:, add a host "
                    "or group of that name to inventory/, or set default_hosts in site.yaml)",
                )
            )
    return explicit


def solutions(
    composed: Composed,
    library: Mapping[str, SolutionSpec],
    defaults: Mapping[str, Scalar],
    problems: list[Problem],
) -> None:
    """A rollback (or why not), a verification section, a source for every parameter."""
    for e in composed.of("solution"):
        spec: SolutionSpec = e.value
        raw = _raw_entry(e)
        if spec.rollback_playbook is None and not spec.no_rollback.strip():
            problems.append(
                _at(e, f"{spec.id}: no rollback_playbook (say why with `no_rollback: <reason>`)")
            )
        if raw is not None and "verification" not in raw:
            problems.append(_at(e, f"{spec.id}: no verification section"))
        for name, param in spec.parameters.items():
            if (
                param.default is None
                and param.from_label is None
                and param.from_inventory is None
                and name not in defaults
            ):
                problems.append(
                    _at(
                        e,
                        f"{spec.id}: parameter {name} has no source (no default, no "
                        "from_label / from_inventory, nothing in the site's defaults)",
                    )
                )
            elif name in defaults and param.from_label is None and param.from_inventory is None:
                try:
                    param.coerce(name, defaults[name])
                except ValueError as exc:
                    problems.append(_at(e, f"{spec.id}: site default: {exc}"))


def _raw_entry(e: Entry) -> dict[str, Any] | None:
    """The entry as written (to see which sections it has, not only their defaults)."""
    return _raw_entries(e.origin.file).get(e.key)


@functools.lru_cache(maxsize=64)
def _raw_entries(file: str) -> dict[str, dict[str, Any]]:
    doc = read_yaml(Path(file), [])
    if doc is None or not isinstance(doc.data, list):
        return {}
    return {str(i["id"]): i for i in doc.data if isinstance(i, dict) and "id" in i}


def cases(
    parts: list[Part],
    domain: Domain,
    catalog: Catalog,
    library: Mapping[str, SolutionSpec],
    problems: list[Problem],
) -> Composed:
    """Every seed case validated and cross-checked, composed by id."""
    entries: list[Entry] = []
    for part in parts:
        for path in part.case_files:
            for record, line in case_records(part, path, problems):
                origin = part.origin(path, line)
                record, override = (
                    (
                        {k: v for k, v in record.items() if k != "override"},
                        record.get("override") is True,
                    )
                    if isinstance(record, dict)
                    else (record, False)
                )
                try:
                    case = Case.model_validate(record)
                except ValidationError as exc:
                    reasons = "; ".join(
                        f"{'.'.join(map(str, x['loc'])) or 'case'}: {x['msg']}"
                        for x in exc.errors()
                    )
                    problems.append(Problem(str(path), line, f"case: {reasons}"))
                    continue
                for reason in domain.problems(case, catalog):
                    problems.append(Problem(str(path), line, f"case {case.id}: {reason}"))
                if case.solution_id not in library:
                    problems.append(
                        Problem(
                            str(path), line, f"case {case.id}: unknown solution {case.solution_id}"
                        )
                    )
                entries.append(Entry("case", case.id, case, origin, override, part.is_site))
    return compose(entries)
