"""SQLite stays the single-process default: a second `mendloop run` on the same database
file is refused at once with a message that says why and what to do; a restart after the
first died (even by kill -9) is not refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.errors import ConfigError
from loop.cluster.single import single_worker

HOLD = (
    "import sys, time; from loop.cluster.single import single_worker; "
    "single_worker(sys.argv[1]); print('held', flush=True); time.sleep(600)"
)


def holder(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_worker_on_one_sqlite_file_is_refused_with_a_clear_message(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'mendloop.db'}"
    first = holder(url)  # a worker process holding the database
    try:
        env = {
            **os.environ,
            "MENDLOOP_VAR_DIR": str(tmp_path / "var"),
            "MENDLOOP_API_PORT": "0",
            "NEO4J_URI": "bolt://127.0.0.1:1",  # never reached: refused before anything
        }
        second = subprocess.run(
            [sys.executable, "-m", "mendloop.cli", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        message = second.stderr + second.stdout
        assert f"pid {first.pid}" in message
        assert "SQLite is single-process" in message and "PostgreSQL" in message
        with pytest.raises(ConfigError, match="already runs"):
            single_worker(url)  # and from this process as well
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    lock = single_worker(url)  # the holder died (kill -9): a restart is not refused
    lock.release()


def test_postgresql_and_memory_databases_take_no_lock(tmp_path) -> None:
    assert single_worker("sqlite://").path is None
    assert single_worker("postgresql://u:p@127.0.0.1/db").path is None
    assert not list(Path(tmp_path).iterdir())
