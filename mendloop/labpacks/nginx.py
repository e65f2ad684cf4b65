"""The nginx pack's lab scenario: a Debian nginx (its own config tree, pid file, logs and
temp paths in the lab folder, no systemd) proxying to an upstream (python's http.server
serving a metrics file), prometheus-nginx-exporter on its stub_status, and three faults:

- ``nginx_down``: the master's process group SIGKILLed (a crash: the pid file stays); the
  fix is the pack's validated, identity-checked restart;
- ``nginx_bad_config``: the deploy keeps the running config as good (the pack's
  nginx_config_snapshot.yml, through the real runner and the site's inventory), then
  deploys a site config that passes ``nginx -t`` but proxies to a dead port, and reloads;
  the fix rolls back to the kept copy;
- ``nginx_upstream_failed``: the upstream SIGKILLed; the fix starts it again.

Prometheus scrapes three jobs for the target ``web-1``: the exporter (``nginx``), the
site through nginx (``nginx_probe``) and the upstream directly (``nginx_upstream``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from kernel.config import PACKS_DIR
from mendloop.labpacks import Fault
from mendloop.labsite import write_site
from mendloop.servicelab import Lab, LabError, free_port, need

NGINX = os.environ.get("MENDLOOP_NGINX_BIN", "/usr/sbin/nginx")
EXPORTER = os.environ.get("MENDLOOP_NGINX_EXPORTER_BIN", "/usr/bin/prometheus-nginx-exporter")
PACK_DIR = PACKS_DIR / "nginx"
SITE_CONF = """server {{
    listen 127.0.0.1:{status};
    location = /stub_status {{ stub_status; }}
}}
server {{
    listen 127.0.0.1:{site};
    location / {{ proxy_pass http://127.0.0.1:{upstream}; }}
}}
"""


def status(url: str) -> int:
    """The HTTP status of a GET, 0 when nothing answers."""
    try:
        return httpx.get(url, timeout=3.0).status_code
    except httpx.HTTPError:
        return 0


class NginxScenario:
    """nginx + upstream + prometheus-nginx-exporter under ``lab``, for the target ``web-1``."""

    pack = "nginx"
    target = "web-1"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.folder = lab.root / "nginx"
        self.etc = self.folder / "etc"
        (self.etc / "conf.d").mkdir(parents=True, exist_ok=True)
        self.run = self.folder / "run"
        self.run.mkdir(exist_ok=True)
        self.status_port, self.site_port, self.upstream_port = free_port(), free_port(), free_port()
        self.conf = self.etc / "nginx.conf"
        self.pidfile = self.run / "nginx.pid"
        temp = "".join(
            f"  {kind}_temp_path {self.run / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf.write_text(
            f"worker_processes 1;\npid {self.pidfile};\nerror_log {self.run / 'error.log'};\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n{temp}"
            f"  include {self.etc / 'conf.d'}/*.conf;\n}}\n"
        )
        self.site_conf = self.etc / "conf.d" / "site.conf"
        self.good = SITE_CONF.format(
            status=self.status_port, site=self.site_port, upstream=self.upstream_port
        )
        self.site_conf.write_text(self.good)
        self.start_argv = [need(NGINX, "nginx-light"), "-c", str(self.conf)]
        self.www = self.folder / "www"
        self.www.mkdir(exist_ok=True)
        (self.www / "metrics").write_text("# TYPE lab_app_up gauge\nlab_app_up 1\n")
        self.upstream_pidfile = self.run / "upstream.pid"
        self.upstream_argv = [
            os.path.realpath(sys.executable), "-m", "http.server", "--bind", "127.0.0.1",
            "--directory", str(self.www), str(self.upstream_port),
        ]  # fmt: skip
        self.site_dir: Path | None = None

        upstream = lab.spawn("upstream", self.upstream_argv)
        self.upstream_pidfile.write_text(f"{upstream.popen.pid}\n")
        lab.adopt_pidfile(self.upstream_pidfile, self.upstream_argv[0])  # once restarted
        lab.wait_port(self.upstream_port, upstream)
        subprocess.run(self.start_argv, check=True, timeout=30)  # forks, as the inventory says
        lab.adopt_pidfile(self.pidfile, NGINX)
        lab.wait(self.serves, "nginx serves the upstream", 30)
        exporter_port = free_port()
        exporter = lab.spawn(
            "nginx-exporter",
            [
                need(EXPORTER, "prometheus-nginx-exporter"),
                f"-nginx.scrape-uri=http://127.0.0.1:{self.status_port}/stub_status",
                f"-web.listen-address=127.0.0.1:{exporter_port}",
            ],
        )
        lab.wait_http(f"http://127.0.0.1:{exporter_port}/metrics", exporter)
        self.scrape = {
            "nginx": [f"127.0.0.1:{exporter_port}"],
            "nginx_probe": [f"127.0.0.1:{self.site_port}"],
            "nginx_upstream": [f"127.0.0.1:{self.upstream_port}"],
        }
        self.labels = {job: {"target": self.target} for job in self.scrape}
        self.faults = [
            Fault("nginx_down", "nginx_down", self.crash, self.serves, self.reset),
            Fault("nginx_bad_config", "nginx_bad_config", self.deploy_bad, self.serves,
                  self.reset),
            Fault("nginx_upstream_failed", "nginx_upstream_failed", self.kill_upstream,
                  self.serves, self.reset),
        ]  # fmt: skip

    # -- the site --------------------------------------------------------------------

    def inventory(self) -> dict[str, Any]:
        """The host vars of the target's host: the nginx instance, how nginx and the
        upstream start (linux-host's mendloop_processes format)."""
        return {
            "nginx_instances": {
                "nginx": {
                    "process": "nginx",
                    "conf": str(self.conf),
                    "state_dir": str(self.folder / "state"),
                    "upstream_processes": ["upstream"],
                }
            },
            "mendloop_processes": {
                "nginx": {
                    "pidfile": str(self.pidfile),
                    "executable": NGINX,
                    "cmdline": rf"master process {NGINX} -c {self.conf}$",
                    "start": self.start_argv,
                    "daemonizes": True,
                    "log": str(self.run / "start.log"),
                    "port": self.site_port,
                },
                "upstream": {
                    "pidfile": str(self.upstream_pidfile),
                    "executable": self.upstream_argv[0],
                    "cmdline": rf"http\.server .* {self.upstream_port}$",
                    "start": self.upstream_argv,
                    "chdir": str(self.folder),
                    "log": str(self.run / "upstream.log"),
                    "port": self.upstream_port,
                },
            },
        }

    def site(self, folder: Path) -> Path:
        self.site_dir = write_site(
            folder,
            "nginx-lab",
            include=[self.pack],
            targets={
                self.target: {
                    "components": ["nginx", "nginx_upstream"],
                    "device_type": "nginx",
                    "hosts": [self.target],
                }
            },
            hosts={self.target: self.inventory()},
        )
        return self.site_dir

    def rule_files(self) -> list[Path]:
        return [PACK_DIR / "prometheus" / "nginx.rules.yml"]

    # -- faults ----------------------------------------------------------------------

    def serves(self) -> bool:
        """stub_status answers and a request through nginx reaches the upstream."""
        return (
            status(f"http://127.0.0.1:{self.status_port}/stub_status") == 200
            and status(f"http://127.0.0.1:{self.site_port}/metrics") == 200
        )

    def master(self) -> int:
        pid = int(self.pidfile.read_text().strip())
        if os.path.realpath(os.readlink(f"/proc/{pid}/exe")) != os.path.realpath(NGINX):
            raise LabError(f"pid {pid} of {self.pidfile} is not nginx")
        return pid

    def crash(self) -> None:
        """SIGKILL the master's process group (master and workers, the pid file stays)."""
        os.killpg(os.getpgid(self.master()), signal.SIGKILL)
        self.lab.wait(
            lambda: status(f"http://127.0.0.1:{self.status_port}/stub_status") == 0,
            "nginx gone", 30,
        )  # fmt: skip

    def snapshot(self) -> None:
        """What a deploy pipeline does first: the running config kept as good, by the
        pack's own playbook through the real runner and the site's inventory."""
        from loop.runner import PlaybookRunner

        if self.site_dir is None:
            raise LabError("the scenario's site is not written yet")
        runner = PlaybookRunner(
            {self.pack: PACK_DIR / "playbooks"},
            self.folder / "deploy-runs",
            timeout_s=120,
            inventory=self.site_dir / "inventory",
        )
        run = runner.run(
            "nginx_config_snapshot.yml", {"instance": "nginx"}, check=False,
            pack=self.pack, hosts=(self.target,),
        )  # fmt: skip
        if run.status.value != "successful":
            raise LabError(f"the snapshot failed: {run.failed_tasks} {run.events[-5:]}")

    def deploy_bad(self) -> None:
        """Keep the good config, then deploy one that passes nginx -t but proxies to a
        port nothing listens on, and reload: requests through nginx get 502."""
        self.snapshot()
        dead = free_port()
        self.site_conf.write_text(self.good.replace(f":{self.upstream_port};", f":{dead};"))
        subprocess.run([*self.start_argv, "-s", "reload"], check=True, timeout=30)
        self.lab.wait(
            lambda: status(f"http://127.0.0.1:{self.site_port}/metrics") == 502,
            "the bad config serves 502", 30,
        )  # fmt: skip

    def kill_upstream(self) -> None:
        pid = int(self.upstream_pidfile.read_text().strip())
        if os.path.realpath(os.readlink(f"/proc/{pid}/exe")) != self.upstream_argv[0]:
            raise LabError(f"pid {pid} of {self.upstream_pidfile} is not the upstream")
        os.kill(pid, signal.SIGKILL)
        self.lab.wait(
            lambda: status(f"http://127.0.0.1:{self.site_port}/metrics") == 502,
            "nginx answers 502 without its upstream", 30,
        )  # fmt: skip

    def reset(self) -> None:
        """The good config in place (reloaded if it was not) and everything serving."""
        if self.site_conf.read_text() != self.good:
            self.site_conf.write_text(self.good)
            subprocess.run([*self.start_argv, "-s", "reload"], check=True, timeout=30)
        self.lab.wait(self.serves, "nginx serves the upstream again", 30)
