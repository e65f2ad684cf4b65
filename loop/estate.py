"""What the engine needs of the estate it serves, as an interface: the composed site
(sites/model.py ``Site``) is the one implementation, built by ``build_engine``.

    estate.domain                     # components and topology, faults, targets
    estate.library["sol-x"]           # the solution library (what may run, its risk)
    estate.defaults                   # site-wide parameter defaults (site.yaml)
    estate.alerts                     # the Alertmanager alert map (alerts.yaml files)
    estate.hosts_for("pm-site-1")     # the inventory hosts a target's playbooks run on
    estate.host_vars("localhost")     # a host's inventory variables (group vars merged)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kernel.domain import Domain
from kernel.plan import Scalar
from loop.solutions import SolutionSpec
from rules.alerts import AlertMapping


class Estate(Protocol):
    @property
    def domain(self) -> Domain: ...

    @property
    def library(self) -> Mapping[str, SolutionSpec]: ...

    @property
    def defaults(self) -> Mapping[str, Scalar]: ...

    @property
    def alerts(self) -> tuple[AlertMapping, ...]: ...

    def hosts_for(self, target: str) -> tuple[str, ...]: ...

    def host_vars(self, host: str) -> Mapping[str, Any]: ...
