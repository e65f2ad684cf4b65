"""docs/ONBOARDING.md, followed literally: its blocks are the test, so the page cannot drift.

Every fenced block of the page is a step, in order: ```` ```sh ```` runs in bash (``set -euo
pipefail``; the environment it exports carries on to the next block, as in one terminal),
```` ```sh background ```` starts a long-running command (another terminal), and a block
whose info string says ``file=PATH`` is written to PATH. Other blocks (``text``, output
examples) are not run. The only change made to the page's text: its four port numbers are
replaced by free ones, so the test never collides with a service on this machine.

The page is followed twice. ``pull``: as written. ``push``: with its push set-up, as its
last section says: ``prometheus_url`` left out of site.yaml, and the ```` ```yaml
remote-write ```` block (its ``mlt_...`` the page's token) appended to Prometheus' config
before Prometheus starts, which is then after the token exists and before the daemon. The
environment is a user's (the venv's ``bin`` first on PATH, running this checkout) plus the
tests' Neo4j.

At the end the real Redis the page started and killed must have been restarted by
mendloop on its own (decided ``auto``), the fix verified, and the checkout untouched
(``git status --porcelain`` as before).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kernel.config import REPO_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

DOC = REPO_ROOT / "docs" / "ONBOARDING.md"
PORTS = (16379, 19121, 19090, 18080)  # redis, its exporter, Prometheus, mendloop's API
BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NEEDED = ("redis-server", "redis-cli", "prometheus", "prometheus-redis-exporter", "jq")


@dataclass(frozen=True)
class Step:
    kind: str  # run | background | file | remote-write (a snippet) | append (push variant)
    body: str
    path: str = ""


def steps(text: str) -> list[Step]:
    """The page's blocks that do something, in order (``remote-write``: the push set-up's
    snippet, used by the push variant only)."""
    found = []
    for match in BLOCK.finditer(text):
        info, body = match.group(1).split(), match.group(2)
        lang = info[0] if info else ""
        target = next((w.removeprefix("file=") for w in info if w.startswith("file=")), "")
        if target:
            found.append(Step("file", body, target))
        elif lang == "sh":
            found.append(Step("background" if "background" in info else "run", body))
        elif "remote-write" in info:
            found.append(Step("remote-write", body))
    return found


def pushing(page: list[Step]) -> list[Step]:
    """The push variant of the page (see the module docstring); the snippet's token is
    filled in when it is appended, after the page's token step has run."""
    (snippet,) = [s for s in page if s.kind == "remote-write"]
    prom = next(i for i, s in enumerate(page) if s.body.startswith("prometheus "))
    deferred = page[prom : prom + 2]  # Prometheus and the wait for its first scrape
    assert deferred[0].kind == "background" and "query=redis_up" in deferred[1].body
    out: list[Step] = []
    for step in page[:prom] + page[prom + 2 :]:
        if step.path.endswith("site.yaml"):
            body = re.sub(r"\n  prometheus_(url|interval_s): [^\n]*", "", step.body)
            assert "prometheus_url" not in body
            step = Step("file", body, step.path)
        if step.kind == "background" and step.body.startswith("mendloop"):
            out.append(Step("append", snippet.body, "prometheus/prometheus.yml"))
            out += deferred
        out.append(step)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_ports(text: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        text = re.sub(rf"(?<!\d){old}(?!\d)", str(new), text)
    return text


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


class Terminal:
    """The shell session the page is typed into: one environment, background jobs."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.jobs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(self, step: Step, index: int) -> None:
        if step.kind == "remote-write":
            return  # the push set-up's snippet: the push variant appends it (``append``)
        if step.kind == "append":
            token = self.env["MENDLOOP_API_TOKEN"]
            with (self.work / step.path).open("a") as config:
                config.write(step.body.replace("mlt_...", token))
            return
        if step.kind == "file":
            path = self.work / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.body)
            return
        log = self.work / f"step-{index:02d}.log"
        if step.kind == "background":
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    ["bash", "-c", step.body],
                    cwd=self.work,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.jobs.append((proc, log))
            return
        dump = self.work / ".env-after"
        script = f"set -euo pipefail\n{step.body}\nenv -0 > {dump}\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"step {index} failed ({done.returncode}):\n{step.body}\n--- stdout\n"
            f"{done.stdout.decode(errors='replace')[-3000:]}\n--- stderr\n"
            f"{done.stderr.decode(errors='replace')[-3000:]}\n{self.tails()}"
        )
        pairs = (item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
        self.env = dict(pairs)

    def tails(self) -> str:
        parts = []
        for proc, log in self.jobs:
            tail = log.read_text(errors="replace")[-2500:] if log.exists() else ""
            parts.append(f"--- {log.name} (rc {proc.poll()}):\n{tail}")
        return "\n".join(parts)

    def close(self) -> None:
        for proc, _log in reversed(self.jobs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _log in self.jobs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def kill_redis(port: int) -> None:
    """The page's Redis daemonizes (not our child): stop it by its identity."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmd and f"127.0.0.1:{port}".encode() in cmd:
            os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture
def terminal(tmp_path: Path, neo4j_settings: Settings) -> Iterator[Terminal]:
    missing = [name for name in NEEDED if shutil.which(name) is None]
    if missing:
        pytest.fail(f"missing {missing}: ./dev setup installs them", pytrace=False)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin"]),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),  # `mendloop` runs this checkout (a worktree, too)
        **neo4j_settings.neo4j_environ(),
    }
    work = tmp_path / "work"
    work.mkdir()
    term = Terminal(work, env)
    try:
        yield term
    finally:
        term.close()


@pytest.mark.parametrize("intake", ["pull", "push"])
def test_the_onboarding_page_literally(terminal: Terminal, intake: str) -> None:
    before = git_status()
    ports = {old: free_port() for old in PORTS}
    page = steps(with_ports(DOC.read_text(), ports))
    assert [s.kind for s in page].count("background") == 3  # exporter, Prometheus, daemon
    if intake == "push":
        page = pushing(page)
    killed = None
    try:
        for index, step in enumerate(page):
            if "kill -9" in step.body:
                killed = int((terminal.work / "redis" / "redis.pid").read_text())
            terminal.run(step, index)
        api = f"http://127.0.0.1:{ports[18080]}"
        token = terminal.env["MENDLOOP_API_TOKEN"]
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}) as http:
            listed = http.get("/v1/incidents", params={"target": "redis-1"}).json()
            (incident,) = [i for i in listed if i["state"] == "resolved"]
            story = http.get(f"/v1/incidents/{incident['id']}").json()
            pushed = http.get("/v1/intake/remote_write").json()
    finally:
        kill_redis(ports[16379])
    assert killed is not None, "the page never kills Redis"
    assert story["report"]["candidates"][0]["fault"] == "process_down", story["report"]
    assert story["decision"]["mode"] == "auto", story["decision"]  # nobody approved it
    plan = story["remediation"]
    assert (plan["solution_id"], plan["pack"], plan["hosts"]) == (
        "sol-restart-process",
        "linux-host",
        ["redis-1"],
    )
    assert plan["extra_vars"]["process"] == "redis"  # from the inventory (mendloop_process)
    assert story["execution"]["run"]["status"] == "successful"
    assert story["verification"]["status"] == "passed", story["verification"]
    new = int((terminal.work / "redis" / "redis.pid").read_text())
    assert new != killed  # a new Redis, started by the playbook from the inventory's argv
    if intake == "push":  # nothing pulled: the samples came through remote-write
        assert "prometheus_url" not in (terminal.work / "mysite" / "site.yaml").read_text()
        assert pushed["samples"] > 0, pushed
    else:  # nothing pushed: every sample was pulled from Prometheus
        assert pushed["samples"] == 0, pushed
    assert git_status() == before  # nothing of mendloop's own files was touched
