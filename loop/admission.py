"""Admission: which findings become incidents, and which incidents run playbooks, when
more arrive than the loop should take on at once (a flood of bogus targets, a store out).

    admission = Admission(held_max=10_000, opens_per_minute=60)
    admission.hold(finding, rank(standing.established(t), severity))   # from the queue
    for target, established, findings in admission.by_rank(): ...       # best rank first
    admission.release(findings, "opened")       # handled: no longer held (counted)
    gate = RunGate(slots=4)
    async with gate.slot(rank): ...             # a dry run / run of one incident

Held findings: a finding stays here until its incident is committed (SQL failing: it
waits, retried with backoff) or a live incident already handles its fault. One finding
per (target, rule) is held (the earliest; later ones add nothing). At most ``held_max``;
past that the lowest-ranked one is dropped, counted and logged, never silently.

Ranks (lower first): established targets (reporting for ``established_s`` at least,
counted from the first sample that *arrived*, so a back-dated timestamp does not make a
target older) before new ones, then the rule's severity (critical first), then arrival.
So a flood of new targets cannot push a real fault on a known target to the back:
incidents are opened at most ``opens_per_minute`` (best rank first, the rest held; new
targets at most half of them, so the minute always has room for a known one), and at
most ``slots`` incidents run their dry runs / runs at once, the others queued by rank
(new targets hold all but one slot at most).
After a restart every target is new again for ``established_s``; severity and arrival
still order them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from kernel.logsafe import LogDigest
from kernel.models import Finding
from rules.spec import Severity

log = logging.getLogger("mendloop.daemon")

Rank = tuple[int, int, float]
SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}  # critical first
OPEN_WINDOW_S = 60.0
NEW_TARGET_SHARE = 0.5  # of the opens per minute, what new targets may use
RESERVED_RUN_SLOTS = 1  # run slots only established targets may take (when slots > 1)


def rank(established: bool, severity: Severity | str | None, arrival: float) -> Rank:
    """Pure: the order in which held findings are opened and incidents get run slots."""
    order = SEVERITY_ORDER.get(Severity(severity), 1) if severity else len(SEVERITY_ORDER)
    return (0 if established else 1, order, arrival)


class Standing:
    """When each target's first sample arrived (wall time of arrival, not its timestamp).
    Pruned to the monitor's live targets by the daemon's housekeeping."""

    def __init__(self, established_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.established_s = established_s
        self.clock = clock
        self._first: dict[str, float] = {}

    def seen(self, targets: Iterable[str]) -> None:
        now = self.clock()
        first = self._first
        for target in targets:
            if target not in first:
                first[target] = now

    def established(self, target: str) -> bool:
        first = self._first.get(target)
        return first is not None and self.clock() - first >= self.established_s

    def keep_only(self, live: Iterable[str]) -> int:
        """Forget targets the monitor no longer has; returns how many were forgotten."""
        keep = set(live)
        gone = [t for t in list(self._first) if t not in keep]  # list(): intake adds meanwhile
        for target in gone:
            self._first.pop(target, None)
        return len(gone)

    def __len__(self) -> int:
        return len(self._first)


@dataclass
class _Held:
    rank: Rank
    finding: Finding
    deferred: bool = False


class Admission:
    """Held findings (bounded, ranked) and the budget of incidents opened per minute.
    Used from the event loop only. ``counts`` by outcome: ``held``, ``duplicate``,
    ``opened``, ``joined`` (a live incident handles its fault), ``deferred`` (waited for
    the budget; counted once per finding), ``dropped_full``, ``rule_gone``, ``failed``."""

    def __init__(
        self,
        held_max: int,
        opens_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        digest_s: float = 60.0,
    ) -> None:
        self.held_max = held_max
        self.opens_per_minute = opens_per_minute
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._held: dict[tuple[str, str], _Held] = {}
        self._opens: deque[tuple[float, bool]] = deque()  # (when, for a new target)
        self._drops = LogDigest(log, "findings dropped, the held set is full", digest_s)

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, finding: Finding, finding_rank: Rank) -> bool:
        """Keep ``finding`` until it is handled; False when it adds nothing (its target and
        rule are held already) or it ranks below everything held in a full set."""
        key = (finding.target, finding.rule_id)
        if key in self._held:
            self.counts["duplicate"] += 1
            return False
        if len(self._held) >= self.held_max:
            worst = max(self._held, key=lambda k: self._held[k].rank)
            if self._held[worst].rank <= finding_rank:
                self._dropped(finding)
                return False
            self._dropped(self._held.pop(worst).finding)
        self._held[key] = _Held(finding_rank, finding)
        self.counts["held"] += 1
        return True

    def _dropped(self, finding: Finding) -> None:
        self.counts["dropped_full"] += 1
        self._drops.add(finding.rule_id, finding.target)

    def by_rank(self) -> list[tuple[str, bool, list[Finding]]]:
        """Held findings grouped by target (they form problems together), the target with
        the best-ranked finding first, each target's findings in rank order; with whether
        the target is established (its best finding's rank says)."""
        groups: dict[str, list[_Held]] = {}
        for held in sorted(self._held.values(), key=lambda h: h.rank):
            groups.setdefault(held.finding.target, []).append(held)
        return [
            (target, items[0].rank[0] == 0, [h.finding for h in items])
            for target, items in groups.items()
        ]

    def release(self, findings: Iterable[Finding], outcome: str) -> int:
        """These findings are handled (``outcome`` says how): no longer held."""
        released = 0
        for finding in findings:
            if self._held.pop((finding.target, finding.rule_id), None) is not None:
                released += 1
        self.counts[outcome] += released
        return released

    def defer_all(self) -> None:
        """Everything held waits for the budget (counted once per finding)."""
        for held in self._held.values():
            if not held.deferred:
                held.deferred = True
                self.counts["deferred"] += 1

    # -- the budget of incidents opened per minute --------------------------------------

    def _window(self) -> float:
        now = self.clock()
        while self._opens and now - self._opens[0][0] >= OPEN_WINDOW_S:
            self._opens.popleft()
        return now

    def budget(self, established: bool = True) -> int:
        """Incidents that may open now: for an established target whatever the minute has
        left; for a new one no more than its share (``NEW_TARGET_SHARE``), so a flood of
        new targets always leaves room for a real fault on a known one."""
        self._window()
        left = self.opens_per_minute - len(self._opens)
        if established:
            return left
        new_cap = max(1, int(self.opens_per_minute * NEW_TARGET_SHARE))
        return min(left, new_cap - sum(1 for _, new in self._opens if new))

    def opened(self, established: bool = True) -> None:
        self._opens.append((self.clock(), not established))

    def budget_in(self, established: bool = True) -> float:
        """Seconds until ``budget(established)`` allows one more incident (0: now)."""
        now = self._window()
        if self.budget(established) > 0:
            return 0.0
        waits = []
        if len(self._opens) >= self.opens_per_minute:  # the minute is full: its oldest
            waits.append(self._opens[0][0])
        if not established and (news := [t for t, new in self._opens if new]):
            waits.append(news[0])  # new targets' share is full: its oldest
        return max(0.0, max(waits, default=now) + OPEN_WINDOW_S - now)

    def holds_established(self) -> bool:
        return any(h.rank[0] == 0 for h in self._held.values())


class RunGate:
    """At most ``slots`` holders at once; waiters are let in by rank, not by arrival, and
    new targets (rank ``(1, ...)``) hold at most ``slots - RESERVED_RUN_SLOTS``, so a real
    fault on an established target never waits for a flood's dry runs to end. Used from
    the event loop only."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.new_slots = max(1, slots - RESERVED_RUN_SLOTS)
        self.busy = 0
        self.busy_new = 0
        self.peak = 0  # the most holders seen at once (tests, /metrics)
        self.admitted = 0
        self._waiting: list[tuple[Rank, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiting if not f.done())

    @asynccontextmanager
    async def slot(self, slot_rank: Rank) -> AsyncIterator[None]:
        new = slot_rank[0] != 0
        await self._acquire(slot_rank)
        try:
            yield
        finally:
            self._release(new)

    def _free_for(self, new: bool) -> bool:
        return self.busy < self.slots and (not new or self.busy_new < self.new_slots)

    async def _acquire(self, slot_rank: Rank) -> None:
        new = slot_rank[0] != 0
        if self._free_for(new) and not self.waiting:
            self._take(new)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (slot_rank, next(self._seq), future))
        self._grant()  # a slot may be free for this one though others wait for theirs
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted, then cancelled: pass on
                self._release(new)
            raise

    def _take(self, new: bool) -> None:
        self.busy += 1
        self.busy_new += new
        self.admitted += 1
        self.peak = max(self.peak, self.busy)

    def _release(self, new: bool) -> None:
        self.busy -= 1
        self.busy_new -= new
        self._grant()

    def _grant(self) -> None:
        """Let waiters in, best rank first; an established waiter ranks before every new
        one, so the reserved slots go to it."""
        skipped = []
        while self._waiting and self.busy < self.slots:
            entry = heapq.heappop(self._waiting)
            future, new = entry[2], entry[0][0] != 0
            if future.done():
                continue
            if not self._free_for(new):  # new targets' share is full: the next one waits
                skipped.append(entry)
                break
            self._take(new)
            future.set_result(None)
        for entry in skipped:
            heapq.heappush(self._waiting, entry)
