"""Settings that steer remediation: shadow scope and autonomy limits, from MENDLOOP_*."""

import pytest

from kernel.config import load_settings
from kernel.errors import ConfigError


def test_shadow_scope_and_autonomy_limits_are_settings(monkeypatch):
    monkeypatch.setenv("MENDLOOP_SHADOW", "target:pm-site-2,solution:sol-voltage-dvr")
    monkeypatch.setenv("MENDLOOP_AUTONOMY_MAX_PER_TARGET_PER_HOUR", "2")
    settings = load_settings(None)
    assert settings.shadow == "target:pm-site-2,solution:sol-voltage-dvr"
    assert settings.autonomy_max_per_target_per_hour == 2
    monkeypatch.setenv("MENDLOOP_SHADOW", "region:north")
    with pytest.raises(ConfigError, match="MENDLOOP_SHADOW"):
        load_settings(None)
