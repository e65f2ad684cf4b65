"""Rule files -> validated RuleSpecs, or every error found, each with file:line and reason.

    specs, errors = check_paths([Path("rules/cache.yaml")], catalog, faults)
    for error in errors: print(error)          # rules/cache.yaml:14: rule x: unknown metric y

A file with any error is refused whole (its rules are not returned), but checking goes on
so that one run reports as many errors as it can: every rule of every file, duplicate ids
across files, unknown metrics and faults, bad operators and impossible windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kernel.domain import DOMAIN_FILE, Domain
from kernel.errors import KnowledgeError, RuleFileError
from rules.catalog import Catalog
from rules.spec import OPERATORS, ConditionKind, RuleSpec, fmt_duration

CATALOG_FILE = "metrics.yaml"
ALERTS_FILE = "alerts.yaml"  # Alertmanager alerts -> catalog series (rules/alerts.py)
NOT_RULES = {CATALOG_FILE, ALERTS_FILE}
# where a rule's fault names must come from: the domain of the site (its packs' domain.yaml)
FAULT_REGISTRY = "the site's domain"


# -- YAML with line numbers ---------------------------------------------------------------


def _compose(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as exc:
        raise RuleFileError(str(path), None, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(str(path), mark.line + 1 if mark else None, str(exc)) from exc
    except RecursionError:  # a posted file may nest [[[[... thousands deep
        raise RuleFileError(str(path), 1, "YAML nested too deeply") from None
    return data, node


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, yaml.Node | None] | None:
    """(value node, key node) of ``step`` in a mapping or sequence node."""
    if isinstance(node, yaml.MappingNode):
        names = [step, "fault"] if step == "faults" else [step]
        for name in names:
            for key, value in reversed(node.value):  # the last one wins, as in safe_load
                if key.value == name:
                    return value, key
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step], None
    return None


def line_at(node: yaml.Node, loc: Iterable[str | int]) -> int:
    """The line (1-based) of the deepest node along ``loc`` that exists."""
    line = node.start_mark.line + 1
    for step in loc:
        found = _child(node, step)
        if found is None:
            break
        node, key = found
        line = (key or node).start_mark.line + 1
    return line


def load_faults() -> dict[str, str]:
    """Fault name -> component of the power-marketing pack's domain (the default of the
    pure helpers; a site passes its own composed faults)."""
    try:
        return dict(Domain.load().faults)
    except KnowledgeError as exc:
        raise RuleFileError(str(DOMAIN_FILE), None, f"fault registry unreadable: {exc}") from exc


# -- checks beyond the schema ---------------------------------------------------------------


def _reason(error: Mapping[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    if (
        error["type"] == "extra_forbidden"
        and len(loc) >= 3
        and loc[0] in {"all", "none", "sequence"}
    ):
        return f"{'.'.join(loc)}: unknown operator {loc[-1]!r} (use {', '.join(OPERATORS)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc == ["faults"] and error["type"] == "missing":
        return "fault: Field required (name the fault, or list them under faults)"
    return f"{'.'.join(loc) or 'rule'}: {message}"


def semantic_errors(
    spec: RuleSpec, catalog: Catalog, faults: Mapping[str, str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """What the schema cannot see: unknown names and windows that can never be met."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for field, conds in (("all", spec.all_of), ("sequence", spec.sequence), ("none", spec.none_of)):
        for index, cond in enumerate(conds):
            if cond.series not in catalog:
                problems.append(((field, index, "series"), f"unknown metric {cond.series!r}"))
    for fault in spec.faults:
        if fault not in faults:
            problems.append((("faults",), f"unknown fault {fault!r} (not in {FAULT_REGISTRY})"))
    if spec.within is not None:
        field = "sequence" if spec.sequence else "all"
        for index, cond in enumerate(spec.conditions):
            needs = _time_needed(cond, catalog)
            if needs is not None and spec.within <= needs:
                problems.append(
                    (
                        ("within",),
                        f"impossible window: within {fmt_duration(spec.within)} is not longer "
                        f"than the {fmt_duration(needs)} that {field}[{index}] "
                        f"({cond.describe()}) needs to become true",
                    )
                )
    return problems


def _time_needed(cond: Any, catalog: Catalog) -> float | None:
    if cond.kind == ConditionKind.absent:
        return float(cond.absent_for)
    if cond.kind == ConditionKind.rate:
        return None  # a rate can be true on the first sample that covers its window
    if cond.for_s is not None:
        return float(cond.for_s)
    return catalog[cond.series].duration_s if cond.series in catalog else None


# -- files ----------------------------------------------------------------------------------


def check_file(
    path: Path, catalog: Catalog, faults: Mapping[str, str]
) -> tuple[list[RuleSpec], list[RuleFileError]]:
    """The file's rules and every error in it (a file with errors yields no rules)."""
    try:
        data, root = _compose(path)
    except RuleFileError as exc:
        return [], [exc]
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list) or root is None:
        return [], [RuleFileError(str(path), 1, "expected a top-level `rules:` list")]
    found = _child(root, "rules")
    assert found is not None
    entries_node = found[0]
    specs: list[RuleSpec] = []
    errors: list[RuleFileError] = []
    for index, entry in enumerate(data["rules"]):
        node = entries_node.value[index]
        line = node.start_mark.line + 1
        rule_id = str(entry.get("id", f"#{index}")) if isinstance(entry, dict) else f"#{index}"
        if not isinstance(entry, dict):
            errors.append(RuleFileError(str(path), line, f"rule {rule_id}: must be a mapping"))
            continue
        try:
            # `override: true` is the site's composition mark (sites/), not a rule field
            fields = {k: v for k, v in entry.items() if k != "override"}
            spec = RuleSpec.model_validate({**fields, "source": f"{path}:{line}"})
        except ValidationError as exc:
            for err in exc.errors():
                where = line_at(node, err["loc"])
                errors.append(RuleFileError(str(path), where, f"rule {rule_id}: {_reason(err)}"))
            continue
        except ValueError as exc:  # raised by a before-validator on the raw mapping
            errors.append(RuleFileError(str(path), line, f"rule {rule_id}: {exc}"))
            continue
        except RecursionError:  # an alias that contains itself (&a [*a])
            errors.append(RuleFileError(str(path), line, f"rule {rule_id}: nested too deeply"))
            continue
        problems = semantic_errors(spec, catalog, faults)
        for loc, reason in problems:
            errors.append(RuleFileError(str(path), line_at(node, loc), f"rule {rule_id}: {reason}"))
        if not problems:
            if not spec.component:
                spec = spec.model_copy(update={"component": faults[spec.fault]})
            specs.append(spec)
    return ([] if errors else specs), errors


def rule_files(rules_dir: Path) -> list[Path]:
    """Every rule file in a directory: ``*.yaml`` except the metric catalog."""
    return [p for p in sorted(rules_dir.glob("*.yaml")) if p.name not in NOT_RULES]


def check_paths(
    paths: Iterable[Path], catalog: Catalog, faults: Mapping[str, str]
) -> tuple[list[RuleSpec], list[RuleFileError]]:
    """All rules of ``paths`` (files or directories) and all errors, duplicates included."""
    files: list[Path] = []
    for path in paths:
        files += rule_files(path) if path.is_dir() else [path]
    specs: list[RuleSpec] = []
    errors: list[RuleFileError] = []
    seen: dict[str, str] = {}
    for path in files:
        file_specs, file_errors = check_file(path, catalog, faults)
        errors += file_errors
        for spec in file_specs:
            if spec.id in seen:
                where, _, line = spec.source.rpartition(":")
                errors.append(
                    RuleFileError(
                        where, int(line), f"duplicate rule id {spec.id} (first at {seen[spec.id]})"
                    )
                )
                continue
            seen[spec.id] = spec.source
            specs.append(spec)
    return specs, errors
