"""A rule fires only once every series it reads has reported the moment it came true.

    gate = TickGate(tick_s=1.0, wait_s=60.0)
    gate.offer(firing, last_seen)            # what the engine fired (rules/compiler.py)
    for firing in gate.release(engine.holds, last_seen, now_of): ...   # after each batch

Why: the engine judges the facts it has, and the samples of one moment can reach analysis
in two batches (two pushes, two remote-write shards, concurrent requests, a poll that caught
one scrape and not the other), or, one series at a time (scrapes of two jobs are stamped
apart). A rule whose trigger came first would fire before the series of its veto
(``none``) could hold it back; a veto that cleared first (the failed upstream answers
again) would fire it on its trigger's last, older sample (the probe through nginx, not yet
scraped again). So a firing waits until every series of its rule -- its facts' and its
vetoes' -- has a sample newer than one tick before the newest of them (the moment the
engine judged; samples of one scrape round are stamped less than a tick apart), and is then
released if it still holds (``CompiledRules.holds``: its facts asserted, no veto true),
or dropped: when it holds again, the engine fires it again. The daemon, whatever its
batches, and a replay (``mendloop rules test``) then judge the same complete moments.

Not waited for: absences (their series is expected to be silent), a series the target
never sent, and one silent for ``wait_s`` (then it is ``no_data``, the analyzer's gap): a
dead series delays a rule by at most ``wait_s``, it never blocks it.
"""

from __future__ import annotations

from collections.abc import Callable

from rules.compiler import AbnormalFact, Firing
from rules.spec import ConditionKind

LastSeen = Callable[[str, str], float | None]


def _series(firing: Firing) -> list[str]:
    """The series a firing's rule reads that are expected to report (not absences)."""
    read = [f.series for f in firing.matched if f.kind != "absent"]
    read += [c.series for c in firing.rule.none_of if c.kind != ConditionKind.absent]
    return list(dict.fromkeys(read))


def fired_at(firing: Firing, last_seen: LastSeen) -> float:
    """When the engine judged a firing, in sample time: the newest sample of its rule's
    series (an absence: when it was found)."""
    times = [f.since + f.value for f in firing.matched if f.kind == "absent"]  # value: silent for
    times += [t for s in _series(firing) if (t := last_seen(firing.target, s)) is not None]
    return max(times, default=max(f.since for f in firing.matched))


class TickGate:
    """Firings waiting for their rules' series (see the module docstring)."""

    def __init__(self, tick_s: float = 1.0, wait_s: float = 60.0) -> None:
        self.tick_s = tick_s
        self.wait_s = wait_s
        self._waiting: dict[tuple[str, tuple[AbnormalFact, ...]], tuple[Firing, float]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def offer(self, firing: Firing, last_seen: LastSeen) -> None:
        """A firing of the engine (judged at the next ``release``)."""
        key = (firing.rule.id, firing.matched)
        self._waiting.setdefault(key, (firing, fired_at(firing, last_seen)))

    def release(
        self,
        holds: Callable[[Firing], bool],
        last_seen: LastSeen,
        now_of: Callable[[str], float],
    ) -> list[Firing]:
        """The firings whose series have all reported (or went silent) and that still hold,
        in the order offered; those that no longer hold are dropped."""
        out = []
        for key, (firing, at) in list(self._waiting.items()):
            if not holds(firing):
                del self._waiting[key]
            elif (
                not self._waits(firing, at, last_seen) or now_of(firing.target) >= at + self.wait_s
            ):
                del self._waiting[key]
                out.append(firing)
        return out

    def _waits(self, firing: Firing, at: float, last_seen: LastSeen) -> bool:
        for series in _series(firing):
            seen = last_seen(firing.target, series)
            if seen is not None and seen <= at - self.tick_s:
                return True
        return False

    def keep(self, rule_ids: set[str]) -> None:
        """After a hot reload: only the firings of rules that did not change stay."""
        self._waiting = {k: v for k, v in self._waiting.items() if k[0] in rule_ids}
