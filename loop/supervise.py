"""Supervision of the engine's long-lived tasks: a failure is logged, counted and retried.

    health = Health()
    task = asyncio.create_task(supervised("findings", consumer.run, health, Backoff()))
    health.failed("sql", exc)       # a dependency failing (from whoever saw it fail)
    health.ok("sql")                # ... and back: the streak ends, logged once
    health.failing()                # {"sql": Failure(since, count, error)}: /readyz says so
    with health.waiting("sql"): ...  # a call that may hang; health.stuck(10) names it

A task body that raises (anything but cancellation) is started again after a delay that
doubles up to a cap, for ever: the loop never dies quietly. The first failure of a streak
is logged with its stack, repeats at 2, 4, 8, ... in a row, the end of the streak once; a
failure blamed on a dependency is logged under the dependency's name; every failure is
counted by name (``Health.failures``, exported by /metrics). What a body was
working on must live outside it (e.g. the engine's held findings), so a restarted body
picks the same items up again: an item is dropped only once it has been handled.
Dependencies (``sql``, ``neo4j``) are tracked the same way as tasks, so /readyz can say
which one is failing, since when and with what, while the tasks that need it wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from kernel.logsafe import safe

log = logging.getLogger("mendloop.daemon")


@dataclass(frozen=True)
class Backoff:
    """Delays between retries: ``first_s``, doubling, at most ``max_s``."""

    first_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure in a row (1-based)."""
        return min(self.max_s, self.first_s * 2.0 ** max(0, min(attempt - 1, 30)))


@dataclass(frozen=True)
class Failure:
    """A streak of failures of one task or dependency."""

    since: float  # unix seconds of the streak's first failure
    count: int
    error: str  # the latest, one line

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.since
        return f"failing for {age:.0f} s ({self.count} failure(s)), last: {self.error}"


def describe(exc: BaseException) -> str:
    """An exception as one printable line: its class and message (a database error by its
    driver's own words, without the statement SQLAlchemy appends)."""
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return safe(f"{type(cause).__name__}: {message}".rstrip(": "), 300)


class Health:
    """Failure streaks and counters by name; thread-safe (the API reads it)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.failures: Counter[str] = Counter()  # since start, by name
        self._failing: dict[str, Failure] = {}
        self._waits: dict[object, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def failed(self, name: str, exc: BaseException, stack: bool = True, quiet: bool = False) -> int:
        """Count a failure of ``name``; returns how many in a row. The first is logged with
        its stack (unless ``stack`` is False: logged already), repeats at 2, 4, 8, ... in a
        row (the rest at debug: a long outage does not flood the log); ``quiet``: counted
        only (another name, the dependency at fault, logs it)."""
        error = describe(exc)
        with self._lock:
            self.failures[name] += 1
            current = self._failing.get(name)
            count = current.count + 1 if current else 1
            since = current.since if current else self.clock()
            self._failing[name] = Failure(since, count, error)
        if quiet:
            log.debug("%s failed (%d in a row): %s", name, count, error)
        elif count == 1:
            log.error("%s failed: %s", name, error, exc_info=exc if stack else None)
        else:
            level = logging.WARNING if count & (count - 1) == 0 else logging.DEBUG
            log.log(level, "%s still failing (%d in a row): %s", name, count, error)
        return count

    def ok(self, name: str) -> None:
        """``name`` worked: its streak (if any) ends."""
        if name not in self._failing:  # the common case, without the lock
            return
        with self._lock:
            ended = self._failing.pop(name, None)
        if ended is not None:
            log.warning(
                "%s works again after %d failure(s) over %.0f s",
                name,
                ended.count,
                self.clock() - ended.since,
            )

    @contextlib.contextmanager
    def waiting(self, name: str) -> Iterator[None]:
        """Around a call on dependency ``name`` that may hang rather than fail (a table
        lock on PostgreSQL waits without a timeout): ``stuck`` reports it meanwhile."""
        token = object()
        with self._lock:
            self._waits[token] = (name, self.clock())
        try:
            yield
        finally:
            with self._lock:
                self._waits.pop(token, None)

    def stuck(self, longer_than_s: float) -> dict[str, float]:
        """Dependencies with a call waiting longer than ``longer_than_s``: the longest wait."""
        now = self.clock()
        found: dict[str, float] = {}
        with self._lock:
            for name, since in self._waits.values():
                if now - since > longer_than_s:
                    found[name] = max(found.get(name, 0.0), now - since)
        return found

    def streak(self, name: str) -> int:
        with self._lock:
            current = self._failing.get(name)
            return current.count if current else 0

    def failing(self) -> dict[str, Failure]:
        with self._lock:
            return dict(self._failing)


Body = Callable[[], Awaitable[None]]


async def supervised(
    name: str,
    body: Body,
    health: Health,
    backoff: Backoff,
    retry: Callable[[BaseException], bool] = lambda _: True,
    blame: Callable[[BaseException], str | None] = lambda _: None,
) -> None:
    """Run ``body`` until it returns; when it raises, count and log it and start it again
    after the backoff. ``retry(exc)`` False: the failure is counted and logged, and the
    task ends (for work that cannot succeed by waiting). ``blame(exc)`` names the
    dependency at fault (e.g. ``sql``), which is marked failing too."""
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            dependency = blame(exc)
            health.failed(name, exc, quiet=dependency is not None)
            if dependency is not None:  # logged once, under the dependency's name
                health.failed(dependency, exc)
            if not retry(exc):
                log.error("%s: not retried (waiting cannot fix this); a restart resumes it", name)
                return
            # this task's own attempts: a body that ran a while before failing starts over
            attempt = 1 if time.monotonic() - started > backoff.max_s else attempt + 1
            await asyncio.sleep(backoff.delay(attempt))
