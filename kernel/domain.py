"""What a case may name: faults, components and their topology, device types, environment
parameters, regions and targets (a site's domain.yaml), and the check of a case against it.
A site composes it from the domain.yaml files of its packs and its own (sites/).

    domain = Domain.load()                     # once per process
    problems = domain.problems(case, series)   # [] when the case is acceptable

Pure apart from reading the file: the graph mirrors this vocabulary, imports validate rows
against it, the generator draws from it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kernel.config import TWIN_PACK
from kernel.errors import KnowledgeError
from kernel.models import Case

# the power-marketing pack's domain: the twin's estate, the default of the pure helpers
# (tests, the twin, evaluation); a daemon uses the domain its site composed (sites/)
DOMAIN_FILE = TWIN_PACK / "domain.yaml"
DIRECTIONS = ("high", "low")
BANDS = ("slight", "moderate", "severe")
_DEVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Symptom:
    """``series:direction[:band]``; matching compares ``key`` (series and direction)."""

    series: str
    direction: str
    band: str = ""

    @property
    def key(self) -> str:
        return f"{self.series}:{self.direction}"

    @property
    def tag(self) -> str:
        return f"{self.key}:{self.band}" if self.band else self.key


def parse_symptom(tag: str) -> Symptom:
    parts = tag.strip().split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"symptom {tag!r} is not series:direction[:band]")
    if parts[1] not in DIRECTIONS:
        raise ValueError(f"symptom {tag!r}: direction must be one of {', '.join(DIRECTIONS)}")
    band = parts[2] if len(parts) == 3 else ""
    if band and band not in BANDS:
        raise ValueError(f"symptom {tag!r}: band must be one of {', '.join(BANDS)}")
    return Symptom(parts[0], parts[1], band)


def symptom_keys(tags: Collection[str]) -> list[str]:
    """The ``series:direction`` part of each tag, deduplicated, sorted (the match key)."""
    return sorted({":".join(t.split(":")[:2]) for t in tags})


@dataclass(frozen=True)
class Domain:
    components: dict[str, tuple[str, ...]]  # component -> its upstreams
    faults: dict[str, str]  # fault -> component
    fault_titles: dict[str, str]
    device_types: dict[str, str]  # device type -> component
    environment: dict[str, tuple[str, ...]]
    regions: dict[str, dict[str, dict[str, list[str]]]]
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = DOMAIN_FILE) -> Domain:
        return _load(path)

    def region_paths(self) -> Iterator[tuple[str, str, str, str]]:
        for province, cities in self.regions.items():
            for city, districts in cities.items():
                for district, areas in districts.items():
                    for area in areas:
                        yield province, city, district, area

    def problems(self, case: Case, series: Collection[str]) -> list[str]:
        """Every reason ``case`` cannot be imported as it stands (empty when it can)."""
        found: list[str] = []
        if case.fault not in self.faults:
            found.append(f"unknown fault {case.fault!r} (known: {', '.join(sorted(self.faults))})")
        if case.device_type and case.device_type not in self.device_types:
            found.append(
                f"unknown device type {case.device_type!r}; add it to the site's domain.yaml "
                f"(known: {', '.join(sorted(self.device_types))})"
            )
        if not case.text.strip():
            found.append("text is empty")
        for tag in case.symptoms:
            try:
                symptom = parse_symptom(tag)
            except ValueError as exc:
                found.append(str(exc))
                continue
            if symptom.series not in series:
                found.append(f"symptom {tag!r}: unknown series {symptom.series!r}")
        for name, value in case.environment.items():
            allowed = self.environment.get(name)
            if allowed is None:
                found.append(
                    f"unknown environment parameter {name!r} "
                    f"(known: {', '.join(sorted(self.environment))})"
                )
            elif value not in allowed:
                found.append(f"environment {name}={value!r} not one of {', '.join(allowed)}")
        if case.region and case.region not in set(self._region_prefixes()):
            found.append(f"unknown region {' > '.join(case.region)}")
        return found

    def _region_prefixes(self) -> Iterator[tuple[str, ...]]:
        for path in self.region_paths():
            for depth in range(1, 5):
                yield path[:depth]

    def region_of(self, case: Case) -> tuple[str, ...]:
        """The case's own region, else its target's (empty when neither is known)."""
        return case.region or self.targets.get(case.target, ())


def target_region(spec: object) -> tuple[str, ...]:
    """A target's station-area path: its entry is the path itself (a list) or a mapping
    with ``region:`` (docs/SITES.md)."""
    if isinstance(spec, dict):
        spec = spec.get("region") or ()
    if not isinstance(spec, list | tuple) or not all(isinstance(p, str) for p in spec):
        raise TypeError(f"target region {spec!r} is not a list of names")
    return tuple(spec)


@functools.cache
def _load(path: Path) -> Domain:
    try:
        data = yaml.safe_load(path.read_text())
        components = {
            name: tuple((spec or {}).get("depends_on", []))
            for name, spec in data["components"].items()
        }
        faults = {name: spec["component"] for name, spec in data["faults"].items()}
        domain = Domain(
            components=components,
            faults=faults,
            fault_titles={name: spec.get("title", name) for name, spec in data["faults"].items()},
            device_types=dict(data["device_types"]),
            environment={k: tuple(v) for k, v in data["environment"].items()},
            regions=data["regions"],
            targets={k: target_region(v) for k, v in (data.get("targets") or {}).items()},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise KnowledgeError(f"{path}: {exc}") from exc
    _check(domain, path)
    return domain


def _check(domain: Domain, path: Path) -> None:
    """The file must agree with itself: every name it refers to is defined in it."""
    errors = [
        f"component {name} depends on unknown {up}"
        for name, ups in domain.components.items()
        for up in ups
        if up not in domain.components
    ]
    errors += [
        f"fault {f} names unknown component {c}"
        for f, c in domain.faults.items()
        if c not in domain.components
    ]
    errors += [
        f"device type {d} names unknown component {c}"
        for d, c in domain.device_types.items()
        if c not in domain.components or not _DEVICE_NAME.match(d)
    ]
    paths = set(domain.region_paths())
    errors += [
        f"target {t} is in unknown station area {' > '.join(p)}"
        for t, p in domain.targets.items()
        if p not in paths
    ]
    if errors:
        raise KnowledgeError(f"{path}: " + "; ".join(errors))
