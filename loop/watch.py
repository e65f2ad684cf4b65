"""Upkeep of the engine: rules hot reload, the analyzer's sweep, housekeeping; each runs as
a supervised task of the daemon.

    upkeep = Upkeep(analyzer, monitor, rule_source, standing, health, hand_over, log_every_s)
    upkeep.reload_rules()      # a refused set keeps the running rules (``errors`` says why)
    upkeep.sweep_once()        # gaps and absences -> findings; bad input summarised in the log;
                               # sustained anomalies no rule explains -> a finding (sustained.py)
    await upkeep.watch_rules() / await upkeep.housekeeping()   # the engine's tasks

Bad input (gaps, stale samples) and low SQI are context, not faults: they used to be one
warning per gap per target per sweep (every 2 s), which floods the log when many targets
go quiet. They are counted in a LogDigest (kernel/logsafe.py): one summary line per
``log_summary_s`` with counts and a few example targets (escaped), each event at debug.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from kernel.errors import RuleFileError
from kernel.logsafe import LogDigest, safe
from kernel.models import Finding
from loop.admission import Standing
from loop.analyze import Analyzer
from loop.findings import ReloadResult
from loop.monitor import Monitor
from loop.supervise import Health
from loop.sustained import SustainedAnomalies
from rules.reload import RuleSource

log = logging.getLogger("mendloop.daemon")


class Upkeep:
    """Rule reloads, sweeps, housekeeping; findings they produce go to ``hand_over``."""

    def __init__(
        self,
        analyzer: Analyzer,
        monitor: Monitor,
        rule_source: RuleSource,
        standing: Standing,
        health: Health,
        hand_over: Callable[[list[Finding]], None],
        log_every_s: float,
        sustained: SustainedAnomalies | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.monitor = monitor
        self.rule_source = rule_source
        self.standing = standing
        self.health = health
        self.hand_over = hand_over
        self.sustained = sustained  # anomalies no rule explains (loop/sustained.py)
        self.errors: tuple[RuleFileError, ...] = ()  # of the last refused reload
        self.rules_poll_s = 2.0
        self.quality_log = LogDigest(log, "input quality (gaps, stale samples)", log_every_s)
        self.sqi_log = LogDigest(log, "SQI below 80 (context, opens nothing)", log_every_s)

    # -- rules: hot reload -------------------------------------------------------------

    def reload_rules(self) -> ReloadResult | None:
        """Re-read the rule files. A set with any error is refused whole (``errors`` says
        file:line and why) and the running rules stay; a good set replaces them
        atomically, the currently abnormal signals re-asserted into it."""
        specs, errors = self.rule_source.load()
        if errors:
            self.errors = tuple(errors)
            for error in errors:
                log.error("rule reload refused, previous rules stay active: %s", error)
            return None
        self.errors = ()
        result = self.analyzer.reload(specs)
        log.info(
            "rules reloaded: %d active (added %s, removed %s, changed %s)",
            len(specs),
            ", ".join(result.added) or "-",
            ", ".join(result.removed) or "-",
            ", ".join(result.changed) or "-",
        )
        self.hand_over(list(result.fired))
        return result

    async def watch_rules(self) -> None:
        """Poll the rule files (mtimes) and sweep the analyzer (gaps, absences, windows)."""
        while True:
            await asyncio.sleep(self.rules_poll_s)
            if self.rule_source.changed():
                await asyncio.to_thread(self.reload_rules)
            self.sweep_once()
            self.health.ok("rules")

    def sweep_once(self) -> None:
        """One sweep: findings of gaps and absences to the loop; bad input and low SQI
        summarised in the log (one line per interval, each at debug), never one warning
        per gap per target per sweep."""
        self.hand_over(self.analyzer.sweep())
        if self.sustained is not None and self.sustained.due(time.monotonic()):
            self.hand_over(self.sustained.check(self.analyzer.deviating()))
        bad_input: defaultdict[tuple[str, str, str], list[str]] = defaultdict(list)
        for finding in self.analyzer.quality_findings():
            bad_input[(finding.kind, finding.target, finding.rule_id)] += finding.series
        for (kind, target, why), series in bad_input.items():
            self.quality_log.add(f"{kind} ({why})", target, ", ".join(series[:5]))
        for finding in self.analyzer.sqi_findings():  # context for people, opens nothing
            self.sqi_log.add("sqi", finding.target, finding.rule_id)
        self.quality_log.flush()
        self.sqi_log.flush()

    async def housekeeping(self, every_s: float = 60.0) -> None:
        """Series that went quiet are forgotten, so memory follows the live series only."""
        while True:
            await asyncio.sleep(every_s)
            freed = self.monitor.expire()
            if freed:
                log.info("expired %d quiet series", freed)
            self.standing.keep_only(self.monitor.targets())
            retrained = await asyncio.to_thread(self.analyzer.retrain_due, self.monitor.clock())
            if retrained:
                log.info("ML baselines retrained: %s", safe(", ".join(retrained), 2000))
            self.health.ok("housekeeping")
