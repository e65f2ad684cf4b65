"""Private data dirs of playbook runs: made locked, written privately, cleaned when dead.

    private, lock = make_private(work_dir)        # run-XXXX, 0700, flock held by this run
    write_private(private / "env" / "extravars", text)    # 0600
    ...; shutil.rmtree(private); os.close(lock)
    clean_stale_runs(work_dir, older_than_s)      # dirs of runs whose process died

A run's dir holds its extra vars until the run ends and the runner removes it; a process
killed mid-run (kill -9 skips every cleanup) leaves it behind. Each run holds a ``flock``
on a lock file in its dir, which the kernel drops when the process dies: a dir whose lock
nobody holds is dead and removed; a live run's dir is never touched. A dir without a lock
file (made a moment ago, or by an older version) is removed only once older than any run
may last.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger("mendloop.execute")

RUN_PREFIX = "run-"  # private data dirs under the work dir
RUN_LOCK = ".mendloop-run.lock"  # held (flock) by the run that owns the dir


def make_private(work_dir: Path) -> tuple[Path, int]:
    """A fresh private dir under ``work_dir`` and the lock (an fd) this run holds on it
    until it closes the fd; OSError when the dir cannot be made."""
    work_dir.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=work_dir))
    try:
        return private, _locked(private)
    except OSError:
        shutil.rmtree(private, ignore_errors=True)
        raise


def write_private(path: Path, text: str) -> None:
    """A file only the owner may read (the private dir is 0700 as well)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def clean_stale_runs(work_dir: Path, older_than_s: float) -> list[str]:
    """Private data dirs left behind by a process that died mid-run (kill -9 skips the
    cleanup, and they hold the run's extra vars): removed when nobody holds their lock
    (the kernel drops a flock with its process), or, lacking a lock file, once older than
    ``older_than_s`` (longer than any run may last). A live run's dir is never touched."""
    removed = []
    try:
        candidates = list(work_dir.glob(f"{RUN_PREFIX}*")) if work_dir.is_dir() else []
    except OSError as exc:  # an unreadable work dir: the runs themselves will say so
        log.warning("private run dirs not cleaned: %s", exc)
        return []
    for path in candidates:
        if path.is_symlink() or not path.is_dir() or _in_use(path, older_than_s):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        log.info("removed %d private run dir(s) left by a stopped process", len(removed))
    return removed


def _locked(private: Path) -> int:
    """The run's lock on its private dir, taken before the lock file appears under its
    name (a rename), so a cleaner never finds that file unlocked while the run lives."""
    pending = private / f"{RUN_LOCK}.new"
    fd = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(pending, private / RUN_LOCK)
    except OSError:
        os.close(fd)
        raise
    return fd


def _in_use(path: Path, older_than_s: float) -> bool:
    try:
        fd = os.open(path / RUN_LOCK, os.O_RDWR)
    except FileNotFoundError:  # not locked yet (just made) or never: its age decides
        try:
            return time.time() - path.stat().st_mtime < older_than_s
        except OSError:
            return True
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False
