"""The nginx pack's playbooks on a real nginx (Debian's /usr/sbin/nginx), run by the real
ansible-runner.

One nginx on a loopback port in a temp dir (its own config tree, pid file, logs, temp
paths) proxies /app/ to a real upstream (python's http.server on another port). The
restart refuses a config nginx -t rejects and otherwise brings a killed nginx back after
its identity check; the config rollback goes back to the copy the pack kept as good (nginx
-t, reload, new workers), publishes the replaced tree's name, and its rollback puts that
tree back; the upstream fix starts a killed upstream and leaves a running one alone. Check
mode changes nothing each time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.models import RunStatus
from loop.runner import PlaybookRunner, RunDetail
from loop.solutions import SolutionSpec, check_file
from rules.alerts import load_alert_map
from rules.catalog import load_catalog
from sites import check_site

PACK = Path(__file__).resolve().parents[2] / "packs" / "nginx"
PLAYBOOKS = PACK / "playbooks"
NGINX = "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx (nginx-light)")

SITE_CONF = """server {{
    listen 127.0.0.1:{port};
    location = /stub_status {{ stub_status; }}
    location /app/ {{ proxy_pass http://127.0.0.1:{upstream}/; }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_for(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


class Lab:
    """A real nginx and its upstream, described to the playbooks as an inventory would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port, self.upstream = free_port(), free_port()
        self.etc = root / "etc" / "nginx"
        (self.etc / "conf.d").mkdir(parents=True)
        self.run = root / "run"
        self.run.mkdir()
        self.conf = self.etc / "nginx.conf"
        temp = "\n".join(
            f"  {kind}_temp_path {self.run / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf.write_text(
            f"worker_processes 1;\npid {self.run / 'nginx.pid'};\n"
            f"error_log {self.run / 'error.log'};\nevents {{ worker_connections 64; }}\n"
            f"http {{\n  access_log off;\n{temp}\n  include {self.etc / 'conf.d'}/*.conf;\n}}\n"
        )
        self.site = self.etc / "conf.d" / "site.conf"
        self.site.write_text(SITE_CONF.format(port=self.port, upstream=self.upstream))
        self.www = root / "www"
        self.www.mkdir()
        (self.www / "metrics").write_text("app_up 1\n")
        self.upstream_argv = [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(self.www),
            str(self.upstream),
        ]

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/app/metrics"

    def host_vars(self) -> dict[str, Any]:
        return {
            "nginx_instances": {
                "nginx": {
                    "process": "nginx",
                    "conf": str(self.conf),
                    "state_dir": str(self.root / "state"),
                    "upstream_processes": ["app"],
                }
            },
            "mendloop_processes": {
                "nginx": {
                    "pidfile": str(self.run / "nginx.pid"),
                    "executable": NGINX,
                    "cmdline": rf"master process {NGINX} -c {self.conf}$",
                    "start": [NGINX, "-c", str(self.conf)],
                    "daemonizes": True,
                    "log": str(self.run / "start.log"),
                    "port": self.port,
                },
                "app": {
                    "pidfile": str(self.run / "app.pid"),
                    "executable": os.path.realpath(sys.executable),
                    "cmdline": rf"http\.server .* {self.upstream}$",
                    "start": self.upstream_argv,
                    "log": str(self.run / "app.log"),
                    "port": self.upstream,
                },
            },
        }

    def start(self) -> None:
        subprocess.run([NGINX, "-c", str(self.conf)], check=True, timeout=30)  # as inventoried
        app = subprocess.Popen(
            self.upstream_argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=app.wait, daemon=True).start()  # reaped when killed
        (self.run / "app.pid").write_text(f"{app.pid}\n")
        wait_for(lambda: status(self.app_url) == 200, "nginx serves the upstream")

    def pid(self, name: str) -> int:
        return int((self.run / f"{name}.pid").read_text())

    def kill_nginx(self) -> None:
        """A crash: the master's whole process group at once (the pid file stays)."""
        os.killpg(os.getpgid(self.pid("nginx")), signal.SIGKILL)
        wait_for(lambda: status(self.app_url) == 0, "nginx is gone")

    def stop(self) -> None:
        """Everything of this lab, whoever started it: nginx by its master's process group
        (the workers with it), the upstream by its command line."""
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes()
                if not proc.name.isdigit():
                    continue
                if str(self.conf).encode() in cmd:
                    os.killpg(os.getpgid(int(proc.name)), signal.SIGKILL)
                elif b"http.server" in cmd and str(self.upstream).encode() in cmd:
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                continue


class HostRunner(PlaybookRunner):
    """The real runner, its localhost carrying the host vars a site's inventory would."""

    def __init__(self, work: Path, host_vars: dict[str, Any]) -> None:
        super().__init__(PLAYBOOKS, work, timeout_s=120)
        self.host_vars = host_vars

    def _inventory(self) -> dict[str, Any]:
        inventory = super()._inventory()
        inventory["all"]["hosts"]["localhost"].update(self.host_vars)
        return inventory


def library() -> dict[str, SolutionSpec]:
    specs, errors = check_file(PACK / "solutions" / "nginx.yaml", PLAYBOOKS)
    assert errors == []
    return specs


def run(runner: HostRunner, sid: str, check: bool, **params: object) -> RunDetail:
    spec = library()[sid]
    return runner.run_detailed(spec.playbook, spec.render_vars({}, params), check)


def snapshot(runner: HostRunner) -> RunDetail:
    return runner.run_detailed("nginx_config_snapshot.yml", {"instance": "nginx"}, check=False)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    nginx = Lab(tmp_path / "lab")
    try:
        nginx.start()
        yield nginx
    finally:
        nginx.stop()


def test_the_pack_library_catalog_and_alerts_validate() -> None:
    specs = library()
    assert set(specs) == {
        "sol-nginx-restart",
        "sol-nginx-config-rollback",
        "sol-nginx-upstream-start",
    }
    assert all(s.check_mode for s in specs.values())
    assert specs["sol-nginx-config-rollback"].rollback_playbook == "restore_nginx_config.yml"
    with pytest.raises(ValueError, match="does not match"):  # a name, never a path or a shell
        specs["sol-nginx-restart"].render_vars({}, {"instance": "../etc; rm -rf /"})
    with pytest.raises(ValueError, match="not one of"):
        specs["sol-nginx-upstream-start"].render_vars({}, {"state": "stopped"})
    catalog = load_catalog(PACK / "metrics.yaml")
    mapping = load_alert_map(PACK / "alerts.yaml", catalog)
    assert sorted(m.series for m in mapping.mappings) == [
        "alert_nginx_down",
        "alert_nginx_proxy_failing",
        "alert_nginx_upstream_down",
    ]


def test_a_site_including_the_pack_checks_clean(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "inventory").mkdir(parents=True)
    (site / "site.yaml").write_text("name: web\ninclude: [nginx]\n")
    (site / "domain.yaml").write_text(
        "targets:\n  web-1: {region: [], components: [nginx], device_type: nginx,"
        " hosts: [web-host]}\n"
    )
    (site / "inventory" / "hosts.yaml").write_text("all:\n  hosts:\n    web-host: {}\n")
    report = check_site(site)
    assert report.problems == [] and report.site is not None
    assert {"sol-nginx-restart", "sol-nginx-config-rollback", "sol-nginx-upstream-start"} <= set(
        report.site.library
    )


def test_restart_validates_the_config_then_brings_a_killed_nginx_back(
    tmp_path: Path, lab: Lab
) -> None:
    runner = HostRunner(tmp_path / "runs", lab.host_vars())
    old = lab.pid("nginx")
    dry = run(runner, "sol-nginx-restart", check=True)
    assert dry.run.status == RunStatus.successful, dry.run.failed_tasks
    assert alive(old) and lab.pid("nginx") == old  # would, did not

    lab.kill_nginx()
    good = lab.site.read_text()
    lab.site.write_text(good.replace("stub_status;", "stub_status_typo;"))  # nginx -t fails
    refused = run(runner, "sol-nginx-restart", check=False)
    assert refused.run.status == RunStatus.failed
    assert any("nginx -t" in t for t in refused.run.failed_tasks), refused.run.failed_tasks
    assert status(lab.app_url) == 0  # nothing started on a config that cannot load

    lab.site.write_text(good)
    real = run(runner, "sol-nginx-restart", check=False)
    assert real.run.status == RunStatus.successful, real.run.failed_tasks
    new = lab.pid("nginx")
    assert new != old and alive(new)
    assert status(lab.app_url) == 200


def test_config_rollback_to_the_last_good_copy_and_its_rollback(tmp_path: Path, lab: Lab) -> None:
    runner = HostRunner(tmp_path / "runs", lab.host_vars())
    none_kept = run(runner, "sol-nginx-config-rollback", check=False)
    assert none_kept.run.status == RunStatus.failed  # nothing kept as good: nothing to go to

    good = lab.site.read_text()
    lab.site.write_text(good.replace("stub_status;", "stub_status_typo;"))
    refused = snapshot(runner)
    assert refused.run.status == RunStatus.failed  # nginx -t refuses it: never kept as good
    lab.site.write_text(good)
    kept = snapshot(runner)
    assert kept.run.status == RunStatus.successful and kept.run.changed == 1
    assert snapshot(runner).run.changed == 0  # the same tree is not kept twice

    bad = good.replace(f":{lab.upstream}/", f":{free_port()}/")  # passes nginx -t, breaks /app/
    lab.site.write_text(bad)
    subprocess.run([NGINX, "-e", "stderr", "-c", str(lab.conf), "-s", "reload"], check=True)
    wait_for(lambda: status(lab.app_url) == 502, "the bad config serves 502")

    dry = run(runner, "sol-nginx-config-rollback", check=True)
    assert dry.run.status == RunStatus.successful and dry.run.changed == 1
    assert lab.site.read_text() == bad and status(lab.app_url) == 502

    fixed = run(runner, "sol-nginx-config-rollback", check=False)
    assert fixed.run.status == RunStatus.successful, fixed.run.failed_tasks
    assert lab.site.read_text() == good
    assert status(lab.app_url) == 200  # reloaded: the module waited for the new workers
    rejected = fixed.captured["rejected_config"]
    assert rejected.startswith("rejected-")
    assert (lab.root / "state" / rejected / "conf.d" / "site.conf").read_text() == bad

    undone = runner.run_detailed(
        library()["sol-nginx-config-rollback"].rollback_playbook or "",
        {"instance": "nginx", "captured_rejected_config": rejected},
        check=False,
    )
    assert undone.run.status == RunStatus.successful, undone.run.failed_tasks
    assert lab.site.read_text() == bad
    wait_for(lambda: status(lab.app_url) == 502, "the rollback put the replaced config back")

    hostile = runner.run_detailed(
        "restore_nginx_config.yml",
        {"instance": "nginx", "captured_rejected_config": "../../etc"},
        check=False,
    )
    assert hostile.run.status == RunStatus.failed and lab.site.read_text() == bad


def test_a_last_good_copy_nginx_rejects_is_never_installed(tmp_path: Path, lab: Lab) -> None:
    runner = HostRunner(tmp_path / "runs", lab.host_vars())
    assert snapshot(runner).run.status == RunStatus.successful
    good = lab.site.read_text()
    state = lab.root / "state"
    kept_site = state / os.readlink(state / "last-good") / "conf.d" / "site.conf"
    kept_site.write_text(good.replace("stub_status;", "stub_status_typo;"))  # rotted copy
    bad = good.replace(f":{lab.upstream}/", f":{free_port()}/")
    lab.site.write_text(bad)
    failed = run(runner, "sol-nginx-config-rollback", check=False)
    assert failed.run.status == RunStatus.failed
    assert lab.site.read_text() == bad  # put back as it was, nginx untouched


def test_a_master_that_is_not_the_inventorys_is_never_touched(tmp_path: Path, lab: Lab) -> None:
    host_vars = lab.host_vars()
    runner = HostRunner(tmp_path / "runs", host_vars)
    assert snapshot(runner).run.status == RunStatus.successful
    good = lab.site.read_text()
    bad = good.replace(f":{lab.upstream}/", f":{free_port()}/")
    lab.site.write_text(bad)
    # the pid file's process runs another config than the inventory's: not "our" nginx
    host_vars["mendloop_processes"]["nginx"]["cmdline"] = "master process .* -c /etc/other\\.conf$"
    strange = HostRunner(tmp_path / "runs2", host_vars)
    master = lab.pid("nginx")
    refused = run(strange, "sol-nginx-config-rollback", check=False)
    assert refused.run.status == RunStatus.failed
    assert any("not the nginx master" in t for t in refused.run.failed_tasks), refused.run
    assert lab.site.read_text() == bad and lab.pid("nginx") == master and alive(master)
    assert not any(p.name.startswith("rejected-") for p in (lab.root / "state").iterdir())


def test_upstream_start_brings_a_killed_upstream_back(tmp_path: Path, lab: Lab) -> None:
    runner = HostRunner(tmp_path / "runs", lab.host_vars())
    running = run(runner, "sol-nginx-upstream-start", check=False)
    assert running.run.status == RunStatus.successful and running.run.changed == 0
    old = lab.pid("app")
    assert alive(old)  # a running upstream is left alone

    os.kill(old, signal.SIGKILL)
    wait_for(lambda: status(lab.app_url) == 502, "nginx answers 502 without its upstream")
    dry = run(runner, "sol-nginx-upstream-start", check=True)
    assert dry.run.status == RunStatus.successful and dry.run.changed == 1
    assert status(lab.app_url) == 502

    real = run(runner, "sol-nginx-upstream-start", check=False)
    assert real.run.status == RunStatus.successful, real.run.failed_tasks
    assert lab.pid("app") != old and alive(lab.pid("app"))
    assert status(lab.app_url) == 200
