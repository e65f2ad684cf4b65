"""The packs' lab scenarios: each starts its real service and exporter under a Lab
(mendloop/servicelab.py) and knows its faults: how to break the service, how to tell it is
healthy again, how to put it back for the next fault. The pack's e2e test and
`mendloop eval packs` run the same scenario.

    scenario = SCENARIOS["redis"](lab)          # (labpacks/registry.py) the service and
                                               # its exporter, started
    scenario.scrape                            # {job: [address]} for Prometheus
    scenario.labels                            # {job: {"target": ...}}
    site = scenario.site(folder)               # a site including the pack, its inventory
    for fault in scenario.faults: ...          # Fault(name, expected, inject, healthy, reset)

A pack adds its module here and one line to SCENARIOS (mendloop/labpacks/registry.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Fault:
    """One way to break the service, and how to see it mended."""

    name: str  # what the figures call it
    expected: str  # the mendloop fault the pack's rules should name
    inject: Callable[[], None]
    healthy: Callable[[], bool]  # the service answers as it should again
    reset: Callable[[], None]  # leftovers undone, base settings back (for the next fault)


class Scenario(Protocol):
    @property
    def pack(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def scrape(self) -> Mapping[str, Sequence[str]]: ...  # job -> exporter addresses

    @property
    def labels(self) -> Mapping[str, Mapping[str, str]]: ...  # job -> {"target": ...}

    @property
    def faults(self) -> Sequence[Fault]: ...

    def site(self, folder: Path) -> Path: ...

    def rule_files(self) -> list[Path]: ...
