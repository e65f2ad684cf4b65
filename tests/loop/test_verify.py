import asyncio
from datetime import UTC, datetime

from kernel.models import Execution, RunStatus, VerificationStatus
from kernel.plan import VerificationPlan
from loop.verify import check_metrics, verify
from rules.catalog import load_catalog

CATALOG = load_catalog()
ENDED = datetime.fromtimestamp(100.0, UTC)
EXECUTION = Execution(
    id="e",
    incident_id="i",
    playbook="p",
    check_result=None,
    run=None,
    status=RunStatus.successful,
    started=ENDED,
    ended=ENDED,
)


def test_stale_samples_never_count_as_healthy():
    checks = check_metrics(CATALOG, {"cache_hit_ratio": (99.0, 0.99)}, fresh_after=100.0)
    assert not checks[0].healthy
    checks = check_metrics(CATALOG, {"cache_hit_ratio": (101.0, 0.99)}, fresh_after=100.0)
    assert checks[0].healthy


def test_between_crit_and_warn_is_not_yet_healthy():
    checks = check_metrics(CATALOG, {"cache_hit_ratio": (101.0, 0.8)}, fresh_after=100.0)
    assert not checks[0].healthy and checks[0].threshold == 0.85


class FakeClock:
    """Only time is replaced: the metrics come from a plain function of it."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run(series_value, hold_s=3.0, timeout_s=20.0):
    clock = FakeClock()

    def read_latest(target, series):
        return (clock.now, series_value(clock.now))

    async def main():
        task = asyncio.create_task(
            verify(
                EXECUTION,
                VerificationPlan(
                    series=("cache_hit_ratio",), hold_s=hold_s, deadline_s=timeout_s, sqi_min=None
                ),
                read_latest,
                "t",
                CATALOG,
                poll_s=0,
                clock=clock,
            )
        )
        while not task.done():
            clock.now += 0.5
            await asyncio.sleep(0)
        return task.result()

    return asyncio.run(main())


def test_passes_after_the_hold_period():
    result = run(lambda now: 0.95 if now >= 105 else 0.4)
    assert result.status == VerificationStatus.passed
    assert 108 - 100 - 0.5 <= result.waited_s <= 108 - 100 + 0.5


def test_a_relapse_restarts_the_hold():
    # healthy from the start, relapses at 104 (3.5 s into a 5 s hold), healthy again at 105
    result = run(lambda now: 0.4 if 104 <= now < 105 else 0.95, hold_s=5.0)
    assert result.status == VerificationStatus.passed
    assert result.waited_s >= 105 + 5 - 100 - 0.5


def test_times_out_when_never_healthy():
    result = run(lambda now: 0.4, timeout_s=10)
    assert result.status == VerificationStatus.timed_out
    assert not result.checks[0].healthy


def test_no_data_at_all_is_a_failure():
    async def main():
        plan = VerificationPlan(series=("cache_hit_ratio",), hold_s=1.0, deadline_s=1e-9)
        return await verify(EXECUTION, plan, lambda t, s: None, "t", CATALOG, poll_s=0)

    assert asyncio.run(main()).status == VerificationStatus.failed


def test_a_level_series_resolved_during_the_run_verifies_a_metric_one_does_not():
    """An alert series' point holds until the next notification (docs/INTAKE.md): a
    resolution received while the playbook was finishing (after its start, before its
    end) is evidence; a metric sample from then is stale. A resolution from before the
    run started is not evidence either way."""
    during = EXECUTION.model_copy(update={"started": datetime.fromtimestamp(90.0, UTC)})

    def verdict(point_at: float, levels: frozenset[str]) -> VerificationStatus:
        clock = FakeClock()
        plan = VerificationPlan(series=("cache_hit_ratio",), hold_s=2.0, deadline_s=10.0)

        async def main():
            task = asyncio.create_task(
                verify(during, plan, lambda t, s: (point_at, 0.99), "t", CATALOG,
                       levels=levels, poll_s=0, clock=clock)
            )  # fmt: skip
            while not task.done():
                clock.now += 0.5
                await asyncio.sleep(0)
            return task.result()

        return asyncio.run(main()).status

    level = frozenset({"cache_hit_ratio"})
    assert verdict(95.0, level) == VerificationStatus.passed
    assert verdict(95.0, frozenset()) == VerificationStatus.timed_out
    assert verdict(85.0, level) == VerificationStatus.timed_out
