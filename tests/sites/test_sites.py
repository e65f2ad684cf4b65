"""Sites and packs (sites/, docs/SITES.md): the bundled twin site composes the
power-marketing pack; `mendloop init` writes a site that checks clean; a broken site
reports every problem at its file:line; overrides replace, conflicts name both places."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernel.config import DEFAULT_SITE, TWIN_PACK, load_settings
from kernel.config import PACKS_DIR as PACKS
from kernel.errors import ConfigError, SiteError
from sites import check_site, load_site
from sites.compose import Entry, compose
from sites.load import rule_loader
from sites.model import Origin
from sites.scaffold import scaffold

ROOT = Path(__file__).resolve().parents[2]


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``needle`` in a file the test wrote (no hard-coded numbers)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_the_bundled_twin_site_is_the_power_marketing_pack() -> None:
    site = load_site(DEFAULT_SITE)
    assert site.packs == ("power-marketing",)
    assert len(site.catalog) == 286 and len(site.domain.faults) == 12
    assert {s.pack for s in site.library.values()} == {"power-marketing"}
    assert len(site.cases) == 31 and all(c.solution_id in site.library for c in site.cases)
    assert site.playbooks_dir("power-marketing") == TWIN_PACK / "playbooks"
    # every target runs its playbooks on the twin site's one host
    assert site.hosts_for("pm-site-1") == ("localhost",) == site.hosts_for("any-target")
    assert site.defaults["twin_url"].startswith("http://")
    # the twin's URL is a parameter of its solutions only, never a var of every playbook
    assert all("twin_url" in s.parameters for s in site.library.values())


def test_nothing_of_power_marketing_without_the_pack(tmp_path: Path) -> None:
    scaffold(tmp_path / "empty")
    site = load_site(tmp_path / "empty")
    assert site.packs == () and not site.catalog and not site.rules and not site.library
    assert not site.cases and not site.domain.faults
    assert site.inventory is not None and list(site.inventory.hosts) == ["localhost"]


def test_init_writes_a_site_that_checks_clean_and_refuses_to_overwrite(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "mendloop.cli", "init", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "mendloop.cli",
            "--site",
            str(tmp_path / "s"),
            "site",
            "check",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["ok"] and report["problems"] == [] and report["packs"] == []
    with pytest.raises(SiteError, match="a site is already there"):
        scaffold(tmp_path / "s")


def broken_site(root: Path) -> dict[str, Path]:
    """A site with one of each problem site check must find, and two site-local packs."""
    files = {
        "site": write(
            root,
            "site.yaml",
            """
            name: broken
            include: [base, extra, nosuchpack]
            flavour: spicy
            settings: {api_port: 9999, neo4j_password: oops}
            defaults: {level: 3}
            """,
        ),
        "base_pack": write(root, "packs/base/pack.yaml", "name: base\n"),
        "base_domain": write(
            root,
            "packs/base/domain.yaml",
            """
            components:
              cache: {depends_on: []}
              api: {depends_on: [cache, ghost]}
            faults:
              cache_down: {component: cache, title: cache down}
            device_types:
              redis: cache
            """,
        ),
        "extra_pack": write(root, "packs/extra/pack.yaml", "name: extra\nrequires: [base]\n"),
        "extra_domain": write(
            root,
            "packs/extra/domain.yaml",
            """
            faults:
              cache_down: {component: cache, title: defined again}
            """,
        ),
        "domain": write(
            root,
            "domain.yaml",
            """
            faults:
              cache_down: {component: cache, title: mine, override: true}
              api_slow: {component: api}
              disk_full: {component: disk}
            targets:
              web-1: {components: [api]}
              web-2: {hosts: [nowhere]}
            """,
        ),
        "metrics": write(
            root,
            "metrics.yaml",
            """
            metrics:
              - name: redis_up
                unit: bool
                subsystem: cache
                layer: system
                bad: low
                warn: 1
                crit: 0.5
                duration_s: 5
                sqi_role: none
                description: up
              - name: disk_free
                unit: bytes
                subsystem: storage
                layer: system
                bad: low
                warn: 10
                crit: 5
                duration_s: 5
                sqi_role: none
                description: free
            """,
        ),
        "rules": write(
            root,
            "rules/r.yaml",
            """
            rules:
              - id: cache-down
                fault: cache_down
                summary: down
                all:
                  - series: redis_up
                    below: 1
              - id: ghost
                fault: no_such_fault
                summary: x
                all:
                  - series: redis_up
                    below: 1
            """,
        ),
        "solutions": write(
            root,
            "solutions/s.yaml",
            """
            - id: sol-restart
              title: restart
              faults: [cache_down]
              risk: low
              playbook: restart.yml
              parameters:
                service: {type: str}
                level: {type: int}
            - id: sol-escape
              title: escape
              faults: [cache_down]
              risk: low
              playbook: ../../outside.yml
              no_rollback: a restart cannot be undone
              verification: {metrics: [redis_up]}
            """,
        ),
        "playbook": write(root, "playbooks/restart.yml", "- hosts: all\n  tasks: []\n"),
        "cases": write(
            root,
            "cases/c.jsonl",
            "\n".join(
                json.dumps(c)
                for c in (
                    {
                        "id": "c1",
                        "title": "t",
                        "text": "cache down",
                        "fault": "cache_down",
                        "solution_id": "sol-restart",
                    },
                    {
                        "id": "c2",
                        "title": "t",
                        "text": "x",
                        "fault": "nope",
                        "solution_id": "sol-nope",
                        "device_type": "oracle",
                    },
                )
            )
            + "\n{not json\n",
        ),
        "inventory": write(root, "inventory/hosts.yaml", "all:\n  hosts:\n    h1: {}\n"),
    }
    write(root.parent, "outside.yml", "- hosts: all\n  tasks: []\n")
    return files


def test_a_broken_site_reports_every_problem_at_its_file_and_line(tmp_path: Path) -> None:
    f = broken_site(tmp_path / "site")
    report = check_site(tmp_path / "site")
    assert report.site is None
    shown = {str(p) for p in report.problems}

    def at(key: str, needle: str, reason: str) -> str:
        return f"{f[key]}:{line_of(f[key], needle)}: {reason}"

    expected = {
        at("site", "include", "unknown pack 'nosuchpack' (bundled: "),
        at("site", "flavour", "unknown key 'flavour'"),
        at("site", "neo4j_password", "setting neo4j_password: secrets and the site itself"),
        at("base_domain", "api:", "component api depends on unknown component ghost"),
        at("extra_domain", "cache_down", "conflict: fault cache_down is defined at "),
        at("domain", "disk_full", "fault disk_full: unknown component 'disk'"),
        at("domain", "web-1", "target web-1: no inventory host"),
        at("domain", "web-2", "target web-2: host 'nowhere' is not in the inventory"),
        at(
            "metrics",
            "disk_free",
            "metric disk_free: component 'storage' (its subsystem) is "
            "not a component of the domain",
        ),
        at("rules", "no_such_fault", "rule ghost: unknown fault 'no_such_fault'"),
        at("solutions", "sol-restart", "sol-restart: no rollback_playbook"),
        at("solutions", "sol-restart", "sol-restart: no verification section"),
        at("solutions", "sol-restart", "sol-restart: parameter service has no source"),
        at("solutions", "outside.yml", "sol-escape: playbook ../../outside.yml: '..' in the path"),
        at("cases", '"c2"', "case c2: unknown fault 'nope'"),
        at("cases", '"c2"', "case c2: unknown device type 'oracle'"),
        at("cases", '"c2"', "case c2: unknown solution sol-nope"),
        at("cases", "{not json", "not a JSON object"),
    }
    for wanted in expected:
        assert any(s.startswith(wanted) for s in shown), (wanted, sorted(shown))
    # the site's own entry marked override replaces the pack's and is listed
    assert any(o.startswith("fault cache_down: ") and "overrides" in o for o in report.overrides)
    # level has a site default of the right type: no problem for it
    assert not any("parameter level" in s for s in shown)
    with pytest.raises(SiteError) as refused:
        load_site(tmp_path / "site")
    assert len(refused.value.problems) == len(report.problems)


def test_an_inventory_that_does_not_parse_is_a_problem(tmp_path: Path) -> None:
    scaffold(tmp_path / "s")
    (tmp_path / "s" / "inventory" / "hosts.yaml").write_text("all:\n  hosts: [a, b\n")
    report = check_site(tmp_path / "s")
    assert any("hosts.yaml:" in str(p) and "bad YAML" in str(p) for p in report.problems)
    (tmp_path / "s" / "inventory" / "hosts.yaml").write_text("all:\n  hosts:\n    - a\n")
    report = check_site(tmp_path / "s")
    assert any("inventory does not parse" in str(p) for p in report.problems), report.problems


def test_composition_is_pure_and_orders_overrides_in_place() -> None:
    def entry(key: str, part: str, line: int, **kw: bool) -> Entry:
        return Entry("rule", key, f"{part}:{key}", Origin(part, f"{part}.yaml", line), **kw)

    composed = compose(
        [
            entry("a", "p1", 1),
            entry("b", "p1", 2),
            entry("a", "p1", 3),
            entry("a", "site", 7, override=True, from_site=True),
            entry("b", "site", 8, from_site=True),
            entry("c", "site", 9, override=True, from_site=True),
        ]
    )
    # the override takes the pack entry's place (rule order stays the packs')
    assert [e.value for e in composed.of("rule")] == ["site:a", "p1:b", "site:c"]
    reasons = [str(p) for p in composed.problems]
    assert any(r.startswith("site.yaml:8: rule b is already defined at p1.yaml:2") for r in reasons)
    assert any(r.startswith("site.yaml:9: rule c: override: true, but no pack") for r in reasons)
    assert any(r.startswith("p1.yaml:3: rule a is defined twice") for r in reasons)
    assert composed.overrides == ["rule a: site.yaml:7 (site) overrides p1.yaml:1 (p1)"]


def test_site_settings_sit_under_the_config_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scaffold(tmp_path / "s")
    site_yaml = tmp_path / "s" / "site.yaml"
    site_yaml.write_text(
        site_yaml.read_text().replace("settings: {}", "settings: {api_port: 9100, window_s: 60}")
    )
    monkeypatch.delenv("MENDLOOP_SITE", raising=False)
    monkeypatch.delenv("MENDLOOP_API_PORT", raising=False)
    settings = load_settings(None, tmp_path / "s")
    assert (settings.api_port, settings.window_s) == (9100, 60)
    config = tmp_path / "c.yaml"
    config.write_text("api_port: 9200\n")
    assert load_settings(config, tmp_path / "s").api_port == 9200
    monkeypatch.setenv("MENDLOOP_API_PORT", "9300")
    assert load_settings(config, tmp_path / "s").api_port == 9300
    monkeypatch.setenv("MENDLOOP_SITE", str(DEFAULT_SITE))
    assert load_settings(None, tmp_path / "s").site == tmp_path / "s"  # --site beats the env
    site_yaml.write_text(site_yaml.read_text().replace("window_s: 60", "api_token: x"))
    with pytest.raises(ConfigError, match="may not hold api_token"):
        load_settings(None, tmp_path / "s")


def test_the_rule_reload_composes_the_site_again(tmp_path: Path) -> None:
    f = broken_site(tmp_path / "site")
    f["rules"].write_text(f["rules"].read_text().split("  - id: ghost")[0])
    f["extra_domain"].unlink()
    f["base_domain"].write_text(f["base_domain"].read_text().replace(", ghost", ""))
    site_yaml = f["site"]
    site_yaml.write_text("name: fixed\ninclude: [base]\ndefault_hosts: [h1]\n")
    write(tmp_path / "site", "domain.yaml", "components:\n  storage: {depends_on: []}\n")
    (tmp_path / "site" / "solutions" / "s.yaml").unlink()
    (tmp_path / "site" / "cases" / "c.jsonl").unlink()
    site = load_site(tmp_path / "site")
    load = rule_loader(site)
    specs, errors = load()
    assert [s.id for s in specs] == ["cache-down"] and errors == []
    with f["rules"].open("a") as fh:
        fh.write(
            "  - id: bad\n    fault: nope\n    summary: s\n    all:\n"
            "      - series: redis_up\n        below: 1\n"
        )
    specs, errors = load()
    where = line_of(f["rules"], "fault: nope")
    assert [(e.line, "unknown fault 'nope'" in e.reason) for e in errors] == [(where, True)]


def test_alert_maps_compose_from_the_packs_and_the_site(tmp_path: Path) -> None:
    """Each part's alerts.yaml is checked against the composed catalog and keyed by
    alertname (and matchers): a site's own mapping of a pack's alert is a conflict unless
    it overrides it; a series the catalog lacks is a problem at its line."""
    root = tmp_path / "site"
    scaffold(root)
    manifest = root / "site.yaml"
    manifest.write_text(manifest.read_text().replace("include: []", "include: [redis]"))
    pack_alerts = load_site(root).alerts
    assert {m.alertname for m in pack_alerts} >= {"RedisDown"}
    alerts = write(
        root,
        "alerts.yaml",
        """
        alerts:
          - alertname: RedisDown
            series: alert_redis_down
            target_label: instance
          - alertname: RedisDown
            match: {severity: page}
            series: alert_redis_down
          - alertname: Other
            series: no_such_series
        """,
    )
    problems = [str(p) for p in check_site(root).problems]
    assert problems == [
        f"{alerts}:{line_of(alerts, 'alertname: RedisDown')}: alert RedisDown is already "
        f"defined at {PACKS}/redis/alerts.yaml:"
        f"{line_of(PACKS / 'redis' / 'alerts.yaml', 'alertname: RedisDown')} (redis); mark it "
        "`override: true` to replace it",
        f"{alerts}:{line_of(alerts, 'alertname: Other')}: alert Other: series no_such_series "
        "is not in the metric catalog",
    ]
    alerts.write_text(
        alerts.read_text()
        .replace("target_label: instance", "target_label: instance\n    override: true")
        .split("  - alertname: Other")[0]
    )
    site = load_site(root)
    taken = {(m.alertname, m.target_label, bool(m.match)) for m in site.alerts}
    assert ("RedisDown", "instance", False) in taken  # the site's, in the pack's place
    assert ("RedisDown", "target", False) not in taken
    assert ("RedisDown", "instance", True) in taken  # another key: no conflict
    assert len(site.alerts) == len(pack_alerts) + 1


def test_an_unreadable_alert_map_is_a_problem_of_its_file(tmp_path: Path) -> None:
    """A site's alerts.yaml that is not YAML, or has no ``alerts:`` list, is reported at
    that file; the check does not stop there."""
    root = tmp_path / "site"
    scaffold(root)
    alerts = write(root, "alerts.yaml", "alerts: [unclosed\n")
    problems = check_site(root).problems
    assert [p.file for p in problems] == [str(alerts)]
    alerts.write_text("mappings: []\n")
    problems = check_site(root).problems
    assert [p.file for p in problems] == [str(alerts)] and "alerts" in problems[0].reason
