"""Logging values that come from outside, and warnings that repeat.

    log.warning("findings on %s held", safe(target))      # never a raw newline in the log
    digest = LogDigest(log, "input quality", every_s=60)
    digest.add("no_data (gap)", target, "cpu_pct, mem_pct")  # details at debug
    digest.flush()                                          # one summary line per interval

Targets, series names and label text are chosen by whoever pushes samples: written raw,
a newline forges a log line and an escape sequence repaints a terminal. ``safe`` is the
one place they are made printable. ``LogDigest`` turns one warning per gap per target per
sweep (thousands a minute when many targets go quiet) into one line per interval with
counts, the first right away after a quiet spell; each event stays at debug level.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

MAX_CHARS = 200
EXAMPLES = 3  # targets named in a summary line


def safe(value: object, limit: int = MAX_CHARS) -> str:
    """``value`` as one printable line: control characters escaped (``repr`` style, without
    the quotes), cut at ``limit`` characters with a marker."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(text) > limit:
        text = f"{text[:limit]}...(+{len(text) - limit} chars)"
    return text


class LogDigest:
    """Counts repeating warnings by kind and logs them as one summary line per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.every_s = every_s
        self.clock = clock
        self.total: Counter[str] = Counter()  # since start, by kind
        self._counts: Counter[str] = Counter()
        self._targets: dict[str, set[str]] = {}
        self._examples: dict[str, list[str]] = {}
        self._last = -float("inf")

    def add(self, kind: str, target: str, detail: str = "") -> None:
        self.logger.debug("%s: %s on %s: %s", self.what, kind, safe(target), safe(detail))
        self._counts[kind] += 1
        self.total[kind] += 1
        targets = self._targets.setdefault(kind, set())
        if len(targets) < 100_000:  # a count of distinct targets, bounded
            targets.add(target)
        examples = self._examples.setdefault(kind, [])
        if len(examples) < EXAMPLES and target not in examples:
            examples.append(target)
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Log the summary when the interval has passed (or ``force``); True if it did."""
        now = self.clock()
        if not self._counts or (not force and now - self._last < self.every_s):
            return False
        parts = []
        for kind, count in sorted(self._counts.items()):
            names = ", ".join(safe(t, 60) for t in self._examples.get(kind, ()))
            parts.append(
                f"{safe(kind)}: {count} on {len(self._targets.get(kind, ()))} target(s) "
                f"(e.g. {names})"
            )
        window = "" if self._last == -float("inf") else f" in the last {now - self._last:.0f} s"
        self.logger.warning("%s%s: %s", self.what, window, "; ".join(parts))
        self._counts.clear()
        self._targets.clear()
        self._examples.clear()
        self._last = now
        return True
