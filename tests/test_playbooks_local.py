"""The generic solutions on real local resources, run by the real ansible-runner: a process
the test starts is restarted, logs in a temp dir are rotated, old files deleted, a file
cache flushed and warmed from a real HTTP server. Check mode must change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kernel.models import RunStatus
from loop.execute import PlaybookRunner
from loop.solutions import GENERIC_FILE, load_library
from twin.model import Twin
from twin.server import TwinRunner

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
LIBRARY = load_library(PLAYBOOKS, files=(GENERIC_FILE,))


@pytest.fixture
def runner(tmp_path: Path) -> PlaybookRunner:
    return PlaybookRunner(PLAYBOOKS, tmp_path / "runs", timeout_s=120)


def run(runner: PlaybookRunner, sid: str, check: bool, **params: object):
    spec = LIBRARY[sid]
    return runner.run(spec.playbook, spec.render_vars({}, params), check=check)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_parameters_are_validated_before_they_become_extra_vars() -> None:
    spec = LIBRARY["sol-free-disk-space"]
    with pytest.raises(ValueError, match="does not match"):
        spec.render_vars({}, {"clean_dir": "/"})  # never the root
    with pytest.raises(ValueError, match="does not match"):
        spec.render_vars({}, {"clean_dir": "relative/dir"})
    with pytest.raises(ValueError, match="no value"):
        spec.render_vars({}, {})
    with pytest.raises(ValueError, match="unknown parameter"):
        spec.render_vars({}, {"clean_dir": "/tmp/x", "rm": "-rf"})
    restart = LIBRARY["sol-restart-process"]
    with pytest.raises(ValueError, match="above the maximum"):
        restart.render_vars({}, {"pidfile": "/p.pid", "command": "x", "stop_timeout_s": 9999})
    with pytest.raises(ValueError, match="is not a int"):
        restart.render_vars({}, {"pidfile": "/p.pid", "command": "x", "stop_timeout_s": "5"})


def test_restart_process_restarts_a_process_the_test_started(
    runner: PlaybookRunner, tmp_path: Path
) -> None:
    pidfile = tmp_path / "svc.pid"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it is killed
    pidfile.write_text(f"{proc.pid}\n")
    command = f"{sys.executable} -c 'import time; time.sleep(600)'"
    params = {"pidfile": str(pidfile), "command": command, "log_file": str(tmp_path / "o.log")}
    new_pid = None
    try:
        dry = run(runner, "sol-restart-process", check=True, **params)
        assert dry.status == RunStatus.successful, dry.events
        assert dry.changed == 1 and alive(proc.pid)  # would restart it, did not

        real = run(runner, "sol-restart-process", check=False, **params)
        assert real.status == RunStatus.successful, (real.events, real.failed_tasks)
        new_pid = int(pidfile.read_text())
        assert new_pid != proc.pid
        assert proc.wait(timeout=30) == -15  # stopped with SIGTERM
        assert alive(new_pid)
    finally:
        proc.kill()
        if new_pid and alive(new_pid):
            os.kill(new_pid, 9)


def test_rotate_logs_rotates_only_big_logs(runner: PlaybookRunner, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "big.log").write_text("x" * 4096)
    (logs / "small.log").write_text("y")
    (logs / "notes.txt").write_text("z" * 4096)
    params = {"log_dir": str(logs), "min_size": "2k"}

    dry = run(runner, "sol-rotate-logs", check=True, **params)
    assert dry.status == RunStatus.successful and dry.changed == 1
    assert sorted(p.name for p in logs.iterdir()) == ["big.log", "notes.txt", "small.log"]

    real = run(runner, "sol-rotate-logs", check=False, **params)
    assert real.status == RunStatus.successful, real.failed_tasks
    names = sorted(p.name for p in logs.iterdir())
    (rotated,) = [n for n in names if n.startswith("big.log.")]
    assert (logs / rotated).read_text() == "x" * 4096
    assert (logs / "big.log").read_text() == ""  # truncated in place
    assert (logs / "small.log").read_text() == "y" and (logs / "notes.txt").stat().st_size == 4096


def test_free_disk_space_deletes_old_rotated_files_only(
    runner: PlaybookRunner, tmp_path: Path
) -> None:
    area = tmp_path / "area"
    (area / "sub").mkdir(parents=True)
    old = time.time() - 3 * 86400
    for name in ("app.log.1", "sub/job.tmp", "app.log.2"):
        (area / name).write_text("old")
        os.utime(area / name, (old, old))
    (area / "app.log.3").write_text("recent")
    (area / "app.log").write_text("active")
    os.utime(area / "app.log", (old, old))
    params = {"clean_dir": str(area), "older_than": "1d"}

    dry = run(runner, "sol-free-disk-space", check=True, **params)
    assert dry.status == RunStatus.successful and dry.changed == 1  # one task, 3 items
    assert (area / "app.log.1").exists()

    real = run(runner, "sol-free-disk-space", check=False, **params)
    assert real.status == RunStatus.successful and real.changed == 1
    left = sorted(str(p.relative_to(area)) for p in area.rglob("*") if p.is_file())
    assert left == ["app.log", "app.log.3"]


def test_flush_cache_empties_and_warms_from_a_real_server(
    runner: PlaybookRunner, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    (cache / "nested").mkdir(parents=True)
    (cache / "k1").write_text("stale")
    (cache / "nested" / "k2").write_text("stale")
    with TwinRunner(Twin(targets=("c1",)), tick_s=1.0, port=0) as server:
        params = {"cache_dir": str(cache), "warm_urls": f"{server.url}/healthz"}
        dry = run(runner, "sol-flush-cache", check=True, **params)
        assert dry.status == RunStatus.successful, dry.failed_tasks
        assert (cache / "k1").read_text() == "stale"

        real = run(runner, "sol-flush-cache", check=False, **params)
        assert real.status == RunStatus.successful, real.failed_tasks
    assert sorted(p.name for p in cache.iterdir()) == ["warm-00"]
    assert "ok" in (cache / "warm-00").read_text()
