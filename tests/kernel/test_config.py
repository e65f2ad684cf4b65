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


def test_every_setting_is_in_the_readme_table():
    """The README's configuration table names every setting (docs stay true)."""
    import re
    from pathlib import Path

    from kernel.config import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(?:MENDLOOP_|NEO4J_)([A-Z0-9_]+)`", table))
    missing = [
        f
        for f in Settings.model_fields
        if f.upper().removeprefix("NEO4J_") not in named and f.upper() not in named
    ]
    assert missing == []


def test_the_cli_help_points_at_docs_that_exist():
    import re
    from pathlib import Path

    from mendloop.cli import build_parser

    root = Path(__file__).resolve().parents[2]
    shown = build_parser().format_help()
    named = set(re.findall(r"(?:docs/)?[A-Z]+\.md", shown))
    assert named, shown
    for doc in named:
        assert (root / doc).is_file(), doc
