"""Supervision (loop/supervise.py) and log hygiene (kernel/logsafe.py): a failing task is
counted, logged (its stack once) and started again; outside text never reaches the log
raw; repeating warnings become one summary line per interval."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kernel.logsafe import LogDigest, safe
from loop.supervise import Backoff, Health, describe, supervised

FAST = Backoff(first_s=0.001, max_s=0.004)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=30.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 7, 100)] == [0.5, 1.0, 2.0, 4.0, 30.0, 30.0]


def test_a_failing_body_is_counted_logged_once_with_its_stack_and_restarted(caplog) -> None:
    health = Health()
    calls: list[int] = []

    async def body() -> None:
        calls.append(1)
        if len(calls) <= 3:
            raise RuntimeError(f"bad item #{len(calls)}")

    with caplog.at_level(logging.DEBUG, logger="mendloop.daemon"):
        asyncio.run(supervised("findings", body, health, FAST))
    assert len(calls) == 4 and health.failures["findings"] == 3
    stacks = [r for r in caplog.records if r.exc_info]
    assert len(stacks) == 1 and "bad item #1" in stacks[0].getMessage()
    assert health.failing()["findings"].count == 3  # the body reports its own recovery
    health.ok("findings")
    assert health.failing() == {} and "works again after 3 failure(s)" in caplog.text


def test_a_failure_blamed_on_a_dependency_marks_it_failing() -> None:
    health = Health()
    attempts: list[int] = []

    async def body() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("server closed the connection")

    asyncio.run(supervised("walk", body, health, FAST, blame=lambda _: "sql"))
    assert health.failures == {"walk": 1, "sql": 1}
    assert "ConnectionError: server closed the connection" in health.failing()["sql"].describe()


def test_not_retried_ends_the_task_after_counting_it() -> None:
    health = Health()

    async def body() -> None:
        raise AssertionError("a bug")

    asyncio.run(supervised("walk", body, health, FAST, retry=lambda _: False))
    assert health.failures["walk"] == 1


def test_cancellation_is_never_swallowed() -> None:
    async def main() -> None:
        task = asyncio.create_task(supervised("x", lambda: asyncio.sleep(60), Health(), FAST))
        await asyncio.sleep(0)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_describe_gives_the_drivers_words_without_the_statement() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    exc = OperationalError(
        "INSERT INTO incident ...", {}, sqlite3.OperationalError("database is locked")
    )
    assert describe(exc) == "OperationalError: database is locked"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("pm-site-1", "pm-site-1"),
        ("evil\nINFO fake line", "evil\\nINFO fake line"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
        ("tab\there\r", "tab\\there\\r"),
    ],
)
def test_safe_escapes_control_characters(raw: str, shown: str) -> None:
    assert safe(raw) == shown
    assert safe(raw).isprintable()


def test_safe_cuts_long_values() -> None:
    assert safe("x" * 500, limit=10) == "xxxxxxxxxx...(+490 chars)"


def test_a_digest_logs_one_line_per_interval_with_counts(caplog) -> None:
    now = [0.0]
    logger = logging.getLogger("test.digest")
    digest = LogDigest(logger, "input quality", every_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="test.digest"):
        for i in range(500):
            digest.add("no_data (gap)", f"t-{i}", "cpu_pct")
        digest.add("stale (late)", "bad\ntarget", "x")
        now[0] = 61.0
        digest.flush()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 2 and len(debug) == 501
    assert "no_data (gap): 1 on 1 target(s)" in warnings[0]  # the first: right away
    assert "no_data (gap): 499 on 499 target(s)" in warnings[1]
    assert "stale (late): 1 on 1 target(s) (e.g. bad\\ntarget)" in warnings[1]
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert digest.total["no_data (gap)"] == 500
