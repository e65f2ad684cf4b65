"""The composed site: one typed object that build_engine consumes (docs/SITES.md).

site.domain, site.catalog, site.rules, site.library, site.cases, site.inventory
site.settings, site.defaults           # site.yaml: settings, parameter defaults
site.hosts_for("pm-site-1")            # the inventory hosts a target's playbooks run on
site.playbooks_dir("power-marketing")  # where that pack's playbooks live
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.domain import Domain
from kernel.models import Case, Solution
from kernel.plan import Scalar
from loop.solutions import SolutionSpec
from rules.alerts import AlertMapping
from rules.catalog import Catalog
from rules.spec import RuleSpec


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a site, where it is written: ``file:line: reason``."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Origin:
    """Where an entry was defined: the pack (or site) and the file:line."""

    part: str
    file: str
    line: int | None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where} ({self.part})"


@dataclass(frozen=True)
class Inventory:
    """The site's Ansible inventory as parsed by ansible-core: its source and hosts."""

    path: Path
    hosts: Mapping[str, Mapping[str, Any]]  # host -> its variables (group vars merged)
    groups: Mapping[str, tuple[str, ...]]  # group -> its hosts


@dataclass(frozen=True)
class Site:
    root: Path
    name: str
    packs: tuple[str, ...]  # resolved include order (requires first)
    settings: Mapping[str, Any]
    defaults: Mapping[str, Scalar]
    domain: Domain
    catalog: Catalog
    rules: tuple[RuleSpec, ...]
    rule_files: tuple[Path, ...]
    library: Mapping[str, SolutionSpec]
    playbook_dirs: Mapping[str, Path]  # pack (or site) name -> its playbooks/
    part_roots: Mapping[str, Path]  # pack (or site) name -> its directory
    cases: tuple[Case, ...]
    inventory: Inventory | None = None
    target_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_hosts: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # what the site replaced (site check lists them)
    alerts: tuple[AlertMapping, ...] = ()  # the Alertmanager alert map (alerts.yaml files)

    def hosts_for(self, target: str) -> tuple[str, ...]:
        """The inventory hosts ``target``'s playbooks run on (docs/SITES.md, inventory):
        its domain entry's ``hosts``, else the inventory host or group of its name, else
        the site's ``default_hosts``; () when none (the decision escalates). A site
        without an inventory runs on this machine (``localhost``)."""
        if target in self.target_hosts:
            return self.target_hosts[target]
        if self.inventory is None:
            return self.default_hosts or ("localhost",)
        if target in self.inventory.hosts:
            return (target,)
        if target in self.inventory.groups:
            return self.inventory.groups[target]
        return self.default_hosts

    def host_vars(self, host: str) -> Mapping[str, Any]:
        """``host``'s inventory variables, group vars merged ({} when unknown)."""
        if self.inventory is None:
            return {}
        return self.inventory.hosts.get(host, {})

    def playbooks_dir(self, part: str) -> Path:
        return self.playbook_dirs[part]

    def solutions(self) -> dict[str, Solution]:
        """The library as the knowledge graph stores it."""
        return {sid: spec.solution() for sid, spec in self.library.items()}
