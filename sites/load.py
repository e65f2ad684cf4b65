"""Loading a site: its packs resolved, every part read, composed and checked.

    report = check_site(Path("my-site"))   # CheckReport: site (None on problems), problems
    site = load_site(Path("my-site"))      # the Site, or SiteError listing every problem

Packs come from the site's own ``packs/<name>/`` first (a site-local pack, or a
modified copy of a bundled one), then the bundled ``packs/<name>/``; they are resolved
recursively: a pack's
``requires`` before it, each once, in the order of the site's ``include``; a cycle or an
unknown name is a problem at the line that names it. Then the domain, the catalog, the
rules, the solutions and the cases are composed (sites/compose.py) and cross-checked
(sites/check.py); the whole check goes on past the first problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kernel.config import PACKS_DIR, SECRET_FIELDS, Settings
from kernel.domain import Domain
from kernel.errors import RuleFileError, SiteError
from kernel.plan import Scalar
from loop.solutions import SolutionSpec
from loop.solutions import check_file as check_solution_file
from rules.alerts import alert_entries, check_mapping, mapping_key
from rules.catalog import Catalog, MetricSpec
from rules.loader import ALERTS_FILE
from rules.loader import check_file as check_rule_file
from rules.spec import RuleSpec
from sites import check
from sites.compose import Composed, Entry, compose
from sites.inventory import read_inventory
from sites.model import Problem, Site
from sites.read import Part, domain_entries, keyed_marks, metric_entries, names_at, read_manifest
from sites.yamlfile import Doc

_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+|\?): (?P<reason>.*)$", re.S)


@dataclass
class CheckReport:
    """What ``mendloop site check`` prints: every problem, the packs and the overrides."""

    root: Path
    site: Site | None
    problems: list[Problem] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        site = self.site
        return {
            "site": str(self.root),
            "ok": self.ok,
            "problems": [str(p) for p in self.problems],
            "packs": self.packs,
            "overrides": self.overrides,
            "counts": {
                "components": len(site.domain.components),
                "faults": len(site.domain.faults),
                "targets": len(site.domain.targets),
                "metrics": len(site.catalog),
                "rules": len(site.rules),
                "solutions": len(site.library),
                "cases": len(site.cases),
                "alerts": len(site.alerts),
                "inventory_hosts": len(site.inventory.hosts) if site.inventory else 0,
            }
            if site is not None
            else {},
        }


def load_site(root: Path, packs_dir: Path = PACKS_DIR) -> Site:
    """The composed site; SiteError with every problem when it does not hold together."""
    report = check_site(root, packs_dir)
    if report.site is None:
        raise SiteError(str(root), [str(p) for p in report.problems])
    return report.site


def located(text: str) -> Problem:
    """A ``file:line: reason`` string of an older checker as a Problem."""
    m = _LOCATED.match(text)
    if m is None:
        file, _, reason = text.partition(": ")
        return Problem(file, None, reason)
    line = int(m["line"]) if m["line"].isdigit() else None
    return Problem(m["file"], line, m["reason"])


def resolve_packs(site_doc: Doc, packs_dir: Path, problems: list[Problem]) -> list[Part]:
    """The packs the site includes, requirements first, each once; a pack in the site's
    own ``packs/`` folder comes before the bundled one of the same name."""
    search = (site_doc.path.parent / "packs", packs_dir)
    order: list[Part] = []
    seen: set[str] = set()

    def visit(name: str, named_at: tuple[str, int], chain: tuple[str, ...]) -> None:
        if name in chain:
            cycle = " -> ".join((*chain, name))
            problems.append(Problem(named_at[0], named_at[1], f"pack requirement cycle: {cycle}"))
            return
        if name in seen:
            return
        root = next((d / name for d in search if (d / name / "pack.yaml").is_file()), None)
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) or root is None:
            known = sorted(
                {p.name for d in search for p in d.glob("*") if (p / "pack.yaml").is_file()}
            )
            problems.append(
                Problem(
                    named_at[0], named_at[1], f"unknown pack {name!r} (bundled: {', '.join(known)})"
                )
            )
            return
        part = Part.at(root, is_site=False, name=name)
        doc = read_manifest(part, problems)
        if doc is not None:
            for required, line in names_at(doc, "requires", problems):
                visit(required, (str(doc.path), line), (*chain, name))
        seen.add(name)
        order.append(part)

    for name, line in names_at(site_doc, "include", problems):
        visit(name, (str(site_doc.path), line), ())
    return order


def check_site(root: Path, packs_dir: Path = PACKS_DIR) -> CheckReport:
    """Read, compose and check the site at ``root``; every problem is reported."""
    problems: list[Problem] = []
    report = CheckReport(root, None, problems)
    site_part = Part.at(root, is_site=True)
    site_doc = read_manifest(site_part, problems)
    if site_doc is None:
        return report
    site_part = Part.at(root, is_site=True, name=str(site_doc.section("name") or root.name))
    packs = resolve_packs(site_doc, packs_dir, problems)
    report.packs = [p.name for p in packs]
    parts = [*packs, site_part]
    manifests = {p.name: read_manifest(p, []) for p in packs}
    manifests[site_part.name] = site_doc

    domain_list: list[Entry] = []
    regions: set[tuple[str, ...]] = set()
    for part in parts:
        found, paths = domain_entries(part, problems)
        domain_list += found
        regions |= paths
    domain_set = compose(domain_list)
    domain = check.domain_of(domain_set, regions, problems)

    metric_set = compose(e for part in parts for e in metric_entries(part, problems))
    catalog = _catalog(metric_set, domain, problems)
    rules, rule_set = compose_rules(parts, catalog, domain.faults, problems)
    library, solution_set = _library(parts, catalog, domain, problems)
    defaults = _defaults(parts, manifests, problems)
    settings = _settings(site_doc, problems)
    inventory = read_inventory(site_part.inventory_dir, problems)
    for part in packs:
        if part.inventory_dir.is_dir():
            problems.append(
                Problem(
                    str(part.inventory_dir),
                    None,
                    "a pack's inventory is ignored: hosts belong to the site",
                )
            )
    default_hosts = tuple(h for h, _ in names_at(site_doc, "default_hosts", problems))
    target_hosts = check.target_hosts(domain_set, inventory, default_hosts, site_doc, problems)
    check.solutions(solution_set, library, defaults, problems)
    case_set = check.cases(parts, domain, catalog, library, problems)
    alert_set = _alerts(parts, catalog, problems)
    for composed in (domain_set, metric_set, rule_set, solution_set, case_set, alert_set):
        problems.extend(composed.problems)
        report.overrides += composed.overrides
    problems.sort(key=lambda p: (p.file, p.line or 0, p.reason))
    if problems:
        return report
    report.site = Site(
        root=root,
        name=site_part.name,
        packs=tuple(report.packs),
        settings=settings,
        defaults=defaults,
        domain=domain,
        catalog=catalog,
        rules=tuple(rules),
        rule_files=tuple(f for part in parts for f in part.rule_files),
        library=library,
        playbook_dirs={part.name: part.playbooks_dir for part in parts},
        part_roots={part.name: part.root for part in parts},
        cases=tuple(e.value for e in case_set.of("case")),
        inventory=inventory,
        target_hosts=target_hosts,
        default_hosts=default_hosts,
        overrides=tuple(report.overrides),
        alerts=tuple(e.value for e in alert_set.of("alert")),
    )
    return report


def _catalog(metric_set: Composed, domain: Domain, problems: list[Problem]) -> Catalog:
    specs: list[tuple[MetricSpec, Entry]] = []
    for entry in metric_set.of("metric"):
        try:
            spec = MetricSpec.model_validate(entry.value)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(map(str, err["loc"])) or "entry"
                problems.append(
                    Problem(
                        entry.origin.file,
                        entry.origin.line,
                        f"metric {entry.key}: {where}: {err['msg']}",
                    )
                )
            continue
        if spec.component not in domain.components:
            problems.append(
                Problem(
                    entry.origin.file,
                    entry.origin.line,
                    f"metric {spec.name}: component {spec.component!r} (its subsystem) is "
                    "not a component of the domain",
                )
            )
        specs.append((spec, entry))
    by_name = {spec.name: spec for spec, _ in specs}
    for spec, entry in specs:  # a derived series computes from plain catalog series
        for operand in spec.derivation.operands if spec.derivation is not None else ():
            other = by_name.get(operand)
            if other is None or other.derivation is not None:
                why = "not in the catalog" if other is None else "derived itself"
                problems.append(
                    Problem(
                        entry.origin.file,
                        entry.origin.line,
                        f"metric {spec.name}: derive: {operand} {why}",
                    )
                )
    return Catalog([spec for spec, _ in specs])


def compose_rules(
    parts: list[Part], catalog: Catalog, faults: dict[str, str], problems: list[Problem]
) -> tuple[list[RuleSpec], Composed]:
    """Every part's rule files checked against the composed catalog and faults, then
    composed by rule id (overrides applied); the daemon's hot reload calls this too."""
    entries: list[Entry] = []
    for part in parts:
        for path in part.rule_files:
            specs, errors = check_rule_file(path, catalog, faults)
            problems.extend(Problem(e.path, e.line, e.reason) for e in errors)
            by_id = {s.id: s for s in specs}
            for mark in keyed_marks(part, path, "rules", problems):
                if mark.key in by_id:
                    entries.append(_with(mark, "rule", by_id[mark.key]))
    composed = compose(entries)
    return [e.value for e in composed.of("rule")], composed


def _library(
    parts: list[Part], catalog: Catalog, domain: Domain, problems: list[Problem]
) -> tuple[dict[str, SolutionSpec], Composed]:
    entries: list[Entry] = []
    for part in parts:
        for path in part.solution_files:
            specs, errors = check_solution_file(path, part.playbooks_dir, catalog, domain.faults)
            problems.extend(located(e) for e in errors)
            for mark in keyed_marks(part, path, None, problems):
                if mark.key in specs:
                    spec = specs[mark.key].model_copy(update={"pack": part.name})
                    entries.append(_with(mark, "solution", spec))
    composed = compose(entries)
    return {e.key: e.value for e in composed.of("solution")}, composed


def _alerts(parts: list[Part], catalog: Catalog, problems: list[Problem]) -> Composed:
    """Every part's ``alerts.yaml`` checked against the composed catalog, keyed by
    alertname and matchers (rules/alerts.py)."""
    entries: list[Entry] = []
    for part in parts:
        path = part.root / ALERTS_FILE
        if not path.is_file():
            continue
        try:
            found = alert_entries(path)
        except RuleFileError as exc:
            problems.append(Problem(exc.path, exc.line, exc.reason))
            continue
        for name, line, raw in found:
            override = isinstance(raw, dict) and raw.get("override") is True
            entry = {k: v for k, v in raw.items() if k != "override"} if override else raw
            try:
                mapping = check_mapping(name, entry, catalog)
            except ValueError as exc:
                problems.append(Problem(str(path), line, str(exc)))
                continue
            origin = part.origin(path, line)
            key = mapping_key(mapping)
            entries.append(Entry("alert", key, mapping, origin, override, part.is_site))
    return compose(entries)


def _with(mark: Entry, kind: str, value: Any) -> Entry:
    return Entry(kind, mark.key, value, mark.origin, mark.override, mark.from_site)


def _defaults(
    parts: list[Part], manifests: dict[str, Doc | None], problems: list[Problem]
) -> dict[str, Scalar]:
    """Parameter defaults: the packs' in order, then the site's (later wins)."""
    merged: dict[str, Scalar] = {}
    for part in parts:
        doc = manifests.get(part.name)
        if doc is None:
            continue
        for name, value, line in doc.mapping_entries("defaults"):
            if isinstance(value, str | int | float | bool):
                merged[name] = value
            else:
                problems.append(
                    Problem(str(doc.path), line, f"default {name}: not a scalar ({value!r})")
                )
    return merged


def _settings(doc: Doc, problems: list[Problem]) -> dict[str, Any]:
    """The site's non-secret settings, each checked alone against Settings."""
    raw = doc.section("settings")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem(str(doc.path), doc.line(("settings",)), "settings: not a mapping"))
        return {}
    for name in raw:
        line = doc.line(("settings", name))
        if name in SECRET_FIELDS:
            problems.append(
                Problem(
                    str(doc.path),
                    line,
                    f"setting {name}: secrets and the site itself "
                    "belong in the environment, not in site.yaml",
                )
            )
        elif name not in Settings.model_fields:
            problems.append(Problem(str(doc.path), line, f"unknown setting {name!r}"))
    try:
        Settings(**{k: v for k, v in raw.items() if k in Settings.model_fields})
    except ValueError as exc:
        problems.append(Problem(str(doc.path), doc.line(("settings",)), f"settings: {exc}"))
    return dict(raw)


RuleLoader = Callable[[], tuple[list[RuleSpec], list[RuleFileError]]]


def rule_loader(site: Site) -> RuleLoader:
    """What the daemon's hot reload calls: the site's rules composed again (same catalog
    and faults), as RuleSpecs and RuleFileErrors."""

    def load() -> tuple[list[RuleSpec], list[RuleFileError]]:
        problems: list[Problem] = []
        parts = [Part.at(site.part_roots[name], False, name) for name in site.packs]
        parts.append(Part.at(site.root, True, site.name))
        specs, composed = compose_rules(parts, site.catalog, dict(site.domain.faults), problems)
        problems += composed.problems
        return specs, [RuleFileError(p.file, p.line, p.reason) for p in problems]

    return load
