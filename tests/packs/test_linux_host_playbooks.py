"""The linux-host pack's playbooks on real local things, run by the real ansible-runner.

A real redis-server (the Debian package) is restarted after its identity is checked, killed
and started again, and never confused with another program holding its old pid; old files
are deleted under an allowed directory only (symlinks, other directories and other file
systems untouched); logs are rotated while a writer keeps its file open; a real Redis cache
is flushed by pattern (a key with a newline in its name cannot take another key with it)
and warmed from a real HTTP server. Check mode must change nothing each time.
"""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel.models import RunStatus
from loop.runner import PlaybookRunner, RunDetail
from loop.solutions import SolutionSpec, check_file

PACK = Path(__file__).resolve().parents[2] / "packs" / "linux-host"
PLAYBOOKS = PACK / "playbooks"
REDIS = "/usr/bin/redis-server"

pytestmark = pytest.mark.skipif(not Path(REDIS).exists(), reason="needs redis-server")


def library() -> dict[str, SolutionSpec]:
    specs, errors = check_file(PACK / "solutions" / "linux-host.yaml", PLAYBOOKS)
    assert errors == []
    return specs


class HostRunner(PlaybookRunner):
    """The real runner with a site inventory: one host, ``box``, on this machine, carrying
    the host vars a site's inventory would; every run limited to it."""

    def __init__(self, work: Path, host_vars: dict[str, Any]) -> None:
        inventory = work / "inventory"
        inventory.mkdir(parents=True)
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            **host_vars,
        }
        (inventory / "hosts.yaml").write_text(yaml.safe_dump({"all": {"hosts": {"box": host}}}))
        super().__init__(PLAYBOOKS, work / "runs", timeout_s=120, inventory=inventory)


def run(runner: HostRunner, sid: str, check: bool, **params: object) -> RunDetail:
    spec = library()[sid]
    extra = spec.render_vars({}, params)
    return runner.run_detailed(spec.playbook, extra, check, hosts=("box",))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--raw", *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return out.stdout.strip()


def wait_ping(port: int) -> None:
    for _ in range(100):
        try:
            if redis_cli(port, "PING") == "PONG":
                return
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"redis on {port} does not answer")


class Redis:
    """One real redis-server on a loopback port, started the way the inventory says."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.pidfile = self.dir / "redis.pid"
        self.argv = [
            REDIS,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--pidfile",
            str(self.pidfile),
        ]

    def spec(self) -> dict[str, Any]:
        return {
            "pidfile": str(self.pidfile),
            "executable": REDIS,
            "cmdline": rf"redis-server 127\.0\.0\.1:{self.port}$",
            "start": self.argv,
            "chdir": str(self.dir),
            "log": str(self.dir / "out.log"),
            "port": self.port,
        }

    def start(self) -> int:
        proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(target=proc.wait, daemon=True).start()  # reaped when stopped
        self.pidfile.write_text(f"{proc.pid}\n")
        wait_ping(self.port)
        return proc.pid

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def stop(self) -> None:
        for proc in Path("/proc").iterdir():  # every redis of this test, whoever started it
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if proc.name.isdigit() and f"127.0.0.1:{self.port}".encode() in cmd:
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_the_pack_library_validates() -> None:
    specs = library()
    assert set(specs) == {
        "sol-restart-process",
        "sol-free-disk-space",
        "sol-rotate-logs",
        "sol-flush-cache",
    }
    assert all(s.check_mode for s in specs.values())
    with pytest.raises(ValueError, match="does not match"):  # a name, never a command line
        specs["sol-restart-process"].render_vars({}, {"process": "redis; rm -rf /"})
    with pytest.raises(ValueError, match="no value"):
        specs["sol-restart-process"].render_vars({}, {})
    with pytest.raises(ValueError, match="unknown parameter"):
        specs["sol-free-disk-space"].render_vars({}, {"clean_dir": "/"})


def test_restart_checks_identity_then_restarts_a_real_redis(tmp_path: Path, redis: Redis) -> None:
    old = redis.start()
    runner = HostRunner(tmp_path, {"mendloop_processes": {"redis": redis.spec()}})

    dry = run(runner, "sol-restart-process", check=True, process="redis")
    assert dry.run.status == RunStatus.successful, dry.run.events
    assert dry.run.changed == 1 and alive(old) and redis.pid() == old  # would, did not
    assert any(f"would stop pid {old} and start" in str(e.get("msg")) for e in dry.events)

    real = run(runner, "sol-restart-process", check=False, process="redis")
    assert real.run.status == RunStatus.successful, (real.run.failed_tasks, real.events)
    new = redis.pid()
    assert new != old and not alive(old) and alive(new)
    assert redis_cli(redis.port, "PING") == "PONG"

    missing = run(runner, "sol-restart-process", check=False, process="nginx")
    assert missing.run.status == RunStatus.failed  # not in the inventory: nothing runs
    assert alive(new) and redis.pid() == new


def test_a_stopped_redis_takes_the_term_and_is_started_again(tmp_path: Path, redis: Redis) -> None:
    """A hung process (SIGSTOP: it holds its port, answers nothing) gets SIGCONT after the
    TERM: it shuts down as asked (its log says so) instead of waiting for the KILL after
    the timeout (300 s here: longer than the runner lets the run take)."""
    log = redis.dir / "redis.log"
    redis.argv += ["--logfile", str(log)]
    old = redis.start()
    os.kill(old, signal.SIGSTOP)
    runner = HostRunner(tmp_path, {"mendloop_processes": {"redis": redis.spec()}})
    real = run(runner, "sol-restart-process", check=False, process="redis", stop_timeout_s=300)
    assert real.run.status == RunStatus.successful, (real.run.failed_tasks, real.events)
    assert not alive(old) and alive(redis.pid()) and redis.pid() != old
    assert redis_cli(redis.port, "PING") == "PONG"
    assert "Received SIGTERM" in log.read_text()


def test_a_killed_redis_is_started_again(tmp_path: Path, redis: Redis) -> None:
    old = redis.start()
    os.kill(old, signal.SIGKILL)  # the fault: down, its pid file left behind
    while alive(old):
        time.sleep(0.05)
    runner = HostRunner(tmp_path, {"mendloop_processes": {"redis": redis.spec()}})
    real = run(runner, "sol-restart-process", check=False, process="redis")
    assert real.run.status == RunStatus.successful, real.run.failed_tasks
    assert redis.pid() != old and alive(redis.pid())
    assert redis_cli(redis.port, "PING") == "PONG"


def test_a_daemonizing_redis_is_restarted_through_its_own_pid_file(
    tmp_path: Path, redis: Redis
) -> None:
    redis.argv += ["--daemonize", "yes"]  # forks, writes its pid file itself
    subprocess.run(redis.argv, check=True, timeout=30)
    wait_ping(redis.port)
    old = redis.pid()
    spec = {**redis.spec(), "daemonizes": True}
    runner = HostRunner(tmp_path, {"mendloop_processes": {"redis": spec}})
    real = run(runner, "sol-restart-process", check=False, process="redis")
    assert real.run.status == RunStatus.successful, real.run.failed_tasks
    assert redis.pid() != old and not alive(old) and alive(redis.pid())
    assert redis_cli(redis.port, "PING") == "PONG"


def test_a_pid_reused_by_another_program_is_never_signalled(tmp_path: Path, redis: Redis) -> None:
    other = subprocess.Popen(["sleep", "600"])  # holds the pid the stale pid file names
    threading.Thread(target=other.wait, daemon=True).start()
    try:
        redis.pidfile.write_text(f"{other.pid}\n")
        runner = HostRunner(tmp_path, {"mendloop_processes": {"redis": redis.spec()}})
        dry = run(runner, "sol-restart-process", check=True, process="redis")
        assert dry.run.status == RunStatus.successful and dry.run.changed == 1
        assert any(
            f"pid {other.pid} is" in str(e.get("msg")) and "not signalled" in str(e.get("msg"))
            for e in dry.events
        ), dry.events
        real = run(runner, "sol-restart-process", check=False, process="redis")
        assert real.run.status == RunStatus.successful, real.run.failed_tasks
        assert any("not signalled" in str(e.get("msg")) for e in real.events), real.events
        assert other.poll() is None and alive(other.pid)  # the other program untouched
        assert redis.pid() != other.pid and redis_cli(redis.port, "PING") == "PONG"
    finally:
        other.kill()


def test_a_second_instance_is_not_started_when_the_pid_file_lies(
    tmp_path: Path, redis: Redis
) -> None:
    running = redis.start()
    redis.pidfile.write_text("")  # the pid file lost, the process still runs
    runner = HostRunner(tmp_path, {"mendloop_processes": {"redis": redis.spec()}})
    real = run(runner, "sol-restart-process", check=False, process="redis")
    assert real.run.status == RunStatus.failed
    assert any("refusing to guess" in f for f in real.run.failed_tasks)
    assert alive(running)
    assert redis_cli(redis.port, "INFO", "server").count("process_id:") == 1


def aged(path: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def test_free_disk_space_only_under_the_allowed_directory(tmp_path: Path) -> None:
    area, outside = tmp_path / "area", tmp_path / "outside"
    (area / "sub").mkdir(parents=True)
    outside.mkdir()
    for name in ("app.log.1", "sub/job.tmp", "app.log.2.gz"):
        (area / name).write_text("old")
        aged(area / name, 3)
    (area / "app.log.3").write_text("recent")
    (area / "app.log").write_text("active")
    aged(area / "app.log", 3)
    (outside / "secret.tmp").write_text("not yours")
    aged(outside / "secret.tmp", 3)
    (area / "link.tmp").symlink_to(outside / "secret.tmp")  # a file link out
    (area / "dirlink").symlink_to(outside)  # a directory link out
    runner = HostRunner(tmp_path, {"mendloop_clean_paths": [str(area)]})

    dry = run(runner, "sol-free-disk-space", check=True)
    assert dry.run.status == RunStatus.successful and dry.run.changed == 1
    assert (area / "app.log.1").exists()

    other_fs = run(runner, "sol-free-disk-space", check=False, mountpoint="/proc")
    assert other_fs.run.status == RunStatus.successful and other_fs.run.changed == 0

    real = run(runner, "sol-free-disk-space", check=False)
    assert real.run.status == RunStatus.successful and real.run.changed == 1
    left = sorted(str(p.relative_to(area)) for p in area.rglob("*"))
    assert left == ["app.log", "app.log.3", "dirlink", "link.tmp", "sub"]
    assert (outside / "secret.tmp").read_text() == "not yours"


@pytest.mark.parametrize(
    ("allowed", "mountpoint"),
    [(["/"], ""), (["{area}/../outside"], ""), (["{link}"], ""), (["{area}"], "/../etc")],
    ids=["root", "dotdot", "symlink-out", "bad-mountpoint"],
)
def test_free_disk_space_refuses_paths_it_may_not_touch(
    tmp_path: Path, allowed: list[str], mountpoint: str
) -> None:
    area, outside = tmp_path / "area", tmp_path / "outside"
    area.mkdir()
    outside.mkdir()
    (area / "x.tmp").write_text("old")
    (outside / "y.tmp").write_text("old")
    aged(area / "x.tmp", 3)
    aged(outside / "y.tmp", 3)
    (tmp_path / "link").symlink_to(outside)
    roots = [a.format(area=area, link=tmp_path / "link") for a in allowed]
    runner = HostRunner(tmp_path, {"mendloop_clean_paths": roots})
    params = {"mountpoint": mountpoint} if mountpoint else {}
    result = run(runner, "sol-free-disk-space", check=False, **params)
    assert result.run.status == RunStatus.failed
    assert any("refused" in f for f in result.run.failed_tasks), result.run.failed_tasks
    assert (area / "x.tmp").exists() and (outside / "y.tmp").exists()


def test_rotate_logs_keeps_the_writer_and_the_newest_copies(tmp_path: Path) -> None:
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    (logs / "app.log").write_text("x" * 4096)
    (logs / "small.log").write_text("y")
    (logs / "notes.txt").write_text("z" * 4096)
    for stamp in ("20200101T000000", "20200102T000000"):
        (logs / f"app.log.{stamp}.gz").write_bytes(gzip.compress(b"older"))
    (outside / "big.log").write_text("w" * 4096)
    (logs / "linked.log").symlink_to(outside / "big.log")
    writer = (logs / "app.log").open("a")  # a writer that keeps its file open
    runner = HostRunner(tmp_path, {"mendloop_log_paths": [str(logs)]})
    params = {"min_size_bytes": 2048, "keep": 2}
    try:
        dry = run(runner, "sol-rotate-logs", check=True, **params)
        assert dry.run.status == RunStatus.successful and dry.run.changed == 1
        assert (logs / "app.log").stat().st_size == 4096

        real = run(runner, "sol-rotate-logs", check=False, **params)
        assert real.run.status == RunStatus.successful, real.run.failed_tasks
        copies = sorted(p.name for p in logs.glob("app.log.*.gz"))
        assert len(copies) == 2 and copies[0] == "app.log.20200102T000000.gz"
        assert gzip.decompress((logs / copies[1]).read_bytes()) == b"x" * 4096
        writer.write("after\n")
        writer.flush()
        assert (logs / "app.log").read_text().endswith("after\n")
        assert (logs / "app.log").stat().st_size < 4096
    finally:
        writer.close()
    assert (logs / "small.log").read_text() == "y"
    assert (logs / "notes.txt").stat().st_size == 4096
    assert (outside / "big.log").stat().st_size == 4096  # never through a symlink


@pytest.mark.parametrize("root", ["/", "{link}", "{logs}/../logs"], ids=["root", "link", "dotdot"])
def test_rotate_logs_refuses_roots_it_may_not_touch(tmp_path: Path, root: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("x" * 4096)
    (tmp_path / "link").symlink_to(logs)
    allowed = [root.format(link=tmp_path / "link", logs=logs)]
    runner = HostRunner(tmp_path, {"mendloop_log_paths": allowed})
    result = run(runner, "sol-rotate-logs", check=False, min_size_bytes=1)
    assert result.run.status == RunStatus.failed
    assert any("refused" in f for f in result.run.failed_tasks), result.run.failed_tasks
    assert sorted(p.name for p in logs.iterdir()) == ["app.log"]


class Warmer(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - one test's record

    def do_GET(self) -> None:  # a warm-up endpoint that fills the cache again
        type(self).hits.append(self.path)
        redis_cli(self.server.redis_port, "SET", "cache:warm", "1")  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"warm")

    def log_message(self, *args: object) -> None:
        pass


def test_flush_cache_deletes_only_matching_keys_then_warms(tmp_path: Path, redis: Redis) -> None:
    redis.start()
    for key in ("cache:1", "cache:2", "cache:x\nsession:keep", "session:keep"):
        redis_cli(redis.port, "SET", key, "v")
    Warmer.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Warmer)
    server.redis_port = redis.port  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = {
        "port": redis.port,
        "pattern": "cache:*",
        "warm_urls": [f"http://127.0.0.1:{server.server_address[1]}/warm"],
    }
    runner = HostRunner(tmp_path, {"mendloop_caches": {"sessions": cache}})
    try:
        dry = run(runner, "sol-flush-cache", check=True, cache="sessions")
        assert dry.run.status == RunStatus.successful and dry.run.changed == 1
        assert redis_cli(redis.port, "DBSIZE") == "4" and Warmer.hits == []

        real = run(runner, "sol-flush-cache", check=False, cache="sessions")
        assert real.run.status == RunStatus.successful, real.run.failed_tasks
    finally:
        server.shutdown()
        server.server_close()
    keys = sorted(redis_cli(redis.port, "KEYS", "*").splitlines())
    assert keys == ["cache:warm", "session:keep"]  # the newline key went whole, nothing else
    assert Warmer.hits == ["/warm"]
