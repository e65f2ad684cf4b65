"""SQLite is the single-process default: a second worker on the same file is refused.

    lock = single_worker(settings.database_url)    # ConfigError when another worker runs
    ...
    lock.release()

The lock is an exclusive ``flock`` on ``<database>.worker.lock``, held for the life of
the process: the kernel drops it when the process dies (even by ``kill -9``), so a
restart after a crash is never refused, and two live workers on one file always are.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from kernel.errors import ConfigError


class WorkerLock:
    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def single_worker(database_url: str) -> WorkerLock:
    """The lock of the only worker of a SQLite database (nothing to lock for PostgreSQL,
    whose workers coordinate by leases, nor for an in-memory database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return WorkerLock(None, None)
    path = Path(url.database).resolve().with_name(Path(url.database).name + ".worker.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"another mendloop worker (pid {holder}) already runs on the SQLite database "
            f"{url.database}: SQLite is single-process. Stop it, or run several workers on "
            "PostgreSQL (MENDLOOP_DATABASE_URL=postgresql://...; docs/SCALING.md)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return WorkerLock(path, fd)
