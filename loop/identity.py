"""Which label set owns each window slot, so two label sets are never merged into one series.

A catalog entry with no matchers (or loose ones) may be hit by several label sets for the
same target: ``node_filesystem_avail_bytes`` of three mount points, say. The first label set
that reaches a (target, catalog series) owns its window; any other one is refused as
``label_conflict`` (counted, its sender told) until the owner's series expires. The cure is
a matcher in the catalog (rules/selectors.py) that picks the one wanted.

Not thread-safe: the monitor calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np

LABEL_CONFLICT = "label_conflict"
CONFLICT_TEXT = (
    "labels: another label set already feeds this catalog series for this target (series "
    "identity = name + labels); add label matchers to the catalog entry to choose one"
)


class Identities:
    """slot -> the identity (rules.selectors.identity_of) of the label set that owns it."""

    def __init__(self) -> None:
        self._owner: dict[int, Hashable] = {}

    def claim(self, slot: int, identity: Hashable) -> bool:
        """True when ``identity`` owns ``slot`` (now or already); False on a conflict."""
        owner = self._owner.setdefault(slot, identity)
        return owner == identity

    def mark_conflicts(
        self, slots: np.ndarray, identities: Sequence[Hashable], mark: int
    ) -> np.ndarray:
        """``slots`` with ``mark`` where another label set owns the slot (in place)."""
        claim = self.claim
        for row, (slot, identity) in enumerate(zip(slots.tolist(), identities, strict=True)):
            if slot >= 0 and not claim(slot, identity):
                slots[row] = mark
        return slots

    def owner(self, slot: int) -> Hashable | None:
        """The identity of the label set that owns ``slot`` (None: no owner yet)."""
        return self._owner.get(slot)

    def prune(self, live: Callable[[int], bool]) -> None:
        """Forget the owners of freed slots (after the window store expired some)."""
        self._owner = {slot: key for slot, key in self._owner.items() if live(slot)}

    def __len__(self) -> int:
        return len(self._owner)
