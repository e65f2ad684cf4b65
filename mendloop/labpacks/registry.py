"""Every pack's lab scenario by pack name (`mendloop eval packs`, the packs' e2e tests)."""

from __future__ import annotations

from collections.abc import Callable

from mendloop.labpacks import Scenario
from mendloop.labpacks.linuxhost import LinuxHostScenario
from mendloop.labpacks.nginx import NginxScenario
from mendloop.labpacks.postgresql import PostgresScenario
from mendloop.labpacks.redis import RedisScenario
from mendloop.servicelab import Lab

SCENARIOS: dict[str, Callable[[Lab], Scenario]] = {
    "redis": RedisScenario,
    "nginx": NginxScenario,
    "postgresql": PostgresScenario,
    "linux-host": LinuxHostScenario,
}
