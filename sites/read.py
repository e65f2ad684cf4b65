"""Reading one pack or site directory into keyed entries, each with its file:line.

    part = Part.at(Path("packs/redis"), is_site=False)
    manifest = read_manifest(part, problems)           # pack.yaml / site.yaml
    entries += domain_entries(part, problems)          # components, faults, ...
    entries += metric_entries(part, problems)

The layout (docs/SITES.md): ``site.yaml`` or ``pack.yaml``, ``domain.yaml``,
``metrics.yaml``, ``rules/*.yaml``, ``solutions/*.yaml``, ``playbooks/``,
``cases/*.jsonl``, ``inventory/``; every part but the manifest is optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.loader import NOT_RULES
from sites.compose import Entry
from sites.model import Origin, Problem
from sites.yamlfile import Doc, read_yaml

PACK_KEYS = {"name", "description", "requires", "defaults"}
SITE_KEYS = {"name", "description", "include", "settings", "defaults", "default_hosts"}
DOMAIN_KEYS = {"components", "faults", "device_types", "environment", "regions", "targets"}
TARGET_KEYS = {"region", "components", "device_type", "hosts", "description", "override"}


@dataclass(frozen=True)
class Part:
    """A pack or the site: a directory with the layout above."""

    name: str
    root: Path
    is_site: bool

    @classmethod
    def at(cls, root: Path, is_site: bool, name: str = "") -> Part:
        return cls(name or root.name, root, is_site)

    @property
    def manifest_file(self) -> Path:
        return self.root / ("site.yaml" if self.is_site else "pack.yaml")

    @property
    def playbooks_dir(self) -> Path:
        return self.root / "playbooks"

    @property
    def inventory_dir(self) -> Path:
        return self.root / "inventory"

    def files(self, folder: str, suffixes: tuple[str, ...]) -> list[Path]:
        where = self.root / folder
        if not where.is_dir():
            return []
        return sorted(p for p in where.iterdir() if p.suffix in suffixes and p.is_file())

    @property
    def rule_files(self) -> list[Path]:
        """``rules/*.yaml`` but a catalog or alert map kept there (rules/loader.py)."""
        return [p for p in self.files("rules", (".yaml", ".yml")) if p.name not in NOT_RULES]

    @property
    def solution_files(self) -> list[Path]:
        return self.files("solutions", (".yaml", ".yml"))

    @property
    def case_files(self) -> list[Path]:
        return self.files("cases", (".jsonl", ".yaml", ".yml"))

    def origin(self, doc: Doc | Path, line: int | None) -> Origin:
        path = doc.path if isinstance(doc, Doc) else doc
        return Origin(self.name, str(path), line)


def read_manifest(part: Part, problems: list[Problem]) -> Doc | None:
    """The part's pack.yaml / site.yaml, its keys checked."""
    path = part.manifest_file
    if not path.is_file():
        what = "site.yaml" if part.is_site else "pack.yaml"
        problems.append(Problem(str(path), None, f"no {what} in {part.root}"))
        return None
    doc = read_yaml(path, problems)
    if doc is None:
        return None
    if doc.data is None:
        return Doc(doc.path, {}, doc.root)
    if not isinstance(doc.data, dict):
        problems.append(Problem(str(path), 1, "expected a mapping"))
        return None
    allowed = SITE_KEYS if part.is_site else PACK_KEYS
    for key in doc.data:
        if key not in allowed:
            problems.append(
                Problem(
                    str(path),
                    doc.line((key,)),
                    f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
                )
            )
    return doc


def names_at(doc: Doc, key: str, problems: list[Problem]) -> list[tuple[str, int]]:
    """(name, line) of the list of names under ``key`` (include, requires, ...)."""
    items = doc.section(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        problems.append(Problem(str(doc.path), doc.line((key,)), f"{key} must be a list of names"))
        return []
    return [(name, doc.line((key, i))) for i, name in enumerate(items)]


def _mark(value: Any) -> tuple[Any, bool]:
    """The entry without its ``override`` mark, and the mark."""
    if isinstance(value, dict) and "override" in value:
        rest = {k: v for k, v in value.items() if k != "override"}
        return rest, value["override"] is True
    return value, False


def domain_entries(part: Part, problems: list[Problem]) -> tuple[list[Entry], set[tuple[str, ...]]]:
    """Components, faults, device types, environment parameters and targets as entries;
    the region paths (province > city > district > station area), merged by union."""
    path = part.root / "domain.yaml"
    if not path.is_file():
        return [], set()
    doc = read_yaml(path, problems)
    if doc is None or doc.data is None:
        return [], set()
    if not isinstance(doc.data, dict):
        problems.append(Problem(str(path), 1, "expected a mapping"))
        return [], set()
    for key in doc.data:
        if key not in DOMAIN_KEYS:
            problems.append(Problem(str(path), doc.line((key,)), f"unknown section {key!r}"))
    entries: list[Entry] = []
    for section, kind in (
        ("components", "component"),
        ("faults", "fault"),
        ("device_types", "device type"),
        ("environment", "environment parameter"),
        ("targets", "target"),
    ):
        raw = doc.section(section)
        if raw is not None and not isinstance(raw, dict):
            problems.append(Problem(str(path), doc.line((section,)), f"{section}: not a mapping"))
            continue
        for name, value, line in doc.mapping_entries(section):
            value, override = _mark(value)
            entries.append(Entry(kind, name, value, part.origin(doc, line), override, part.is_site))
    return entries, _region_paths(doc, problems)


def _region_paths(doc: Doc, problems: list[Problem]) -> set[tuple[str, ...]]:
    regions = doc.section("regions")
    paths: set[tuple[str, ...]] = set()
    if regions is None:
        return paths
    try:
        for province, cities in regions.items():
            for city, districts in cities.items():
                for district, areas in districts.items():
                    paths.update((str(province), str(city), str(district), str(a)) for a in areas)
    except (AttributeError, TypeError):
        problems.append(
            Problem(
                str(doc.path),
                doc.line(("regions",)),
                "regions: expected province: {city: {district: [station areas]}}",
            )
        )
    return paths


def metric_entries(part: Part, problems: list[Problem]) -> list[Entry]:
    path = part.root / "metrics.yaml"
    if not path.is_file():
        return []
    doc = read_yaml(path, problems)
    if doc is None:
        return []
    if not isinstance(doc.section("metrics"), list):
        problems.append(Problem(str(path), 1, "expected a top-level `metrics:` list"))
        return []
    entries = []
    for index, value, line in doc.list_entries("metrics"):
        value, override = _mark(value)
        name = str(value.get("name", f"#{index}")) if isinstance(value, dict) else f"#{index}"
        entries.append(Entry("metric", name, value, part.origin(doc, line), override, part.is_site))
    return entries


def keyed_marks(part: Part, path: Path, key: str | None, problems: list[Problem]) -> list[Entry]:
    """(id, line, override) of each entry of a rule or solution file, as entries whose
    value is the id (the checked spec is attached by the loader)."""
    doc = read_yaml(path, [])  # its own checker reports a bad file, once
    if doc is None:
        return []
    out = []
    for index, value, line in doc.list_entries(key):
        ident = value.get("id") if isinstance(value, dict) else None
        override = isinstance(value, dict) and value.get("override") is True
        out.append(
            Entry(
                "", str(ident or f"#{index}"), None, part.origin(doc, line), override, part.is_site
            )
        )
    return out


def case_records(part: Part, path: Path, problems: list[Problem]) -> list[tuple[Any, int]]:
    """(record, line) of a case file: JSON lines (``*.jsonl``, the kb import format) or a
    YAML ``cases:`` list."""
    if path.suffix == ".jsonl":
        try:
            text = path.read_text()
        except OSError as exc:
            problems.append(Problem(str(path), None, f"cannot read: {exc}"))
            return []
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((json.loads(line), number))
            except ValueError as exc:
                problems.append(Problem(str(path), number, f"not a JSON object: {exc}"))
        return records
    doc = read_yaml(path, problems)
    if doc is None:
        return []
    if not isinstance(doc.section("cases"), list):
        problems.append(Problem(str(path), 1, "expected a top-level `cases:` list"))
        return []
    return [(value, line) for _, value, line in doc.list_entries("cases")]
