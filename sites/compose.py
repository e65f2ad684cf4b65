"""Composition of keyed entries from packs and a site: pure, every conflict reported.

    entries = [Entry("fault", "disk_full", spec, origin, override=False, from_site=False)]
    composed = compose(entries)          # Composed(entries by (kind, key), problems, overrides)

Entries come in include order (packs, their requirements first, then the site's own).
The same key defined twice by one part, or by two packs, is a conflict naming both
places. A site entry with the key of a pack entry is a conflict too, unless it is marked
``override: true``: then it replaces the pack's entry (in the pack entry's place, so the
order of rules stays that of the packs) and the override is listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sites.model import Origin, Problem


@dataclass(frozen=True)
class Entry:
    kind: str  # component, fault, device type, metric, rule, solution, case, ...
    key: str
    value: Any
    origin: Origin
    override: bool = False
    from_site: bool = False


@dataclass
class Composed:
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[Entry]:
        """The entries of one kind, in composed order."""
        return [e for (k, _), e in self.entries.items() if k == kind]

    def values(self, kind: str) -> dict[str, Any]:
        return {e.key: e.value for e in self.of(kind)}


def _problem(entry: Entry, reason: str) -> Problem:
    return Problem(entry.origin.file, entry.origin.line, reason)


def compose(entries: Iterable[Entry]) -> Composed:
    """The entries keyed, every conflict and override reported (see the module doc)."""
    out = Composed()
    for entry in entries:
        slot = (entry.kind, entry.key)
        previous = out.entries.get(slot)
        name = f"{entry.kind} {entry.key}"
        if entry.override and not entry.from_site:
            out.problems.append(_problem(entry, f"{name}: only a site may override (a pack)"))
        if previous is None:
            if entry.override:
                out.problems.append(
                    _problem(entry, f"{name}: override: true, but no pack defines it")
                )
            out.entries[slot] = entry
        elif previous.origin.part == entry.origin.part:
            out.problems.append(
                _problem(entry, f"{name} is defined twice (first at {previous.origin})")
            )
        elif entry.from_site and entry.override:
            out.entries[slot] = entry
            out.overrides.append(f"{name}: {entry.origin} overrides {previous.origin}")
        elif entry.from_site:
            out.problems.append(
                _problem(
                    entry,
                    f"{name} is already defined at {previous.origin}; "
                    "mark it `override: true` to replace it",
                )
            )
        else:
            out.problems.append(
                _problem(
                    entry, f"conflict: {name} is defined at {entry.origin} and at {previous.origin}"
                )
            )
    return out
