"""Derived series for push intakes (rules/derive.py): computed in the monitor right after
an operand takes a point, from the newest point of both operands of the same target.

    deriver = Deriver(catalog)               # nothing to do when no entry has ``derive:``
    targets, names, ts, values, undefined = deriver.points(touched_keys, latest_of)

The derived point carries the newer operand's timestamp; the two operands' newest points
must be no more than ``MAX_SKEW_S`` apart (else no point: they describe different moments).
A ratio over zero is undefined: no point, counted as ``derive_undefined``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from loop.windows import REFUSALS, WindowStore
from rules.catalog import Catalog
from rules.derive import MAX_SKEW_S, Derivation

Latest = Callable[[str, str], tuple[float, float] | None]


class Deriver:
    def __init__(self, catalog: Catalog) -> None:
        self._by_operand: dict[str, list[tuple[str, Derivation]]] = {}
        for spec in catalog.derived:
            assert spec.derivation is not None  # catalog.derived holds only these
            for operand in spec.derivation.operands:
                self._by_operand.setdefault(operand, []).append((spec.name, spec.derivation))

    def __bool__(self) -> bool:
        return bool(self._by_operand)

    def points(
        self, touched: Iterable[tuple[str, str]], latest: Latest
    ) -> tuple[list[str], list[str], list[float], list[float], int]:
        """Derived (targets, series, ts, values) for the touched (target, series) keys, and
        how many were undefined (a ratio over zero)."""
        wanted: dict[tuple[str, str], Derivation] = {}
        for target, series in touched:
            for name, derivation in self._by_operand.get(series, ()):
                wanted[(target, name)] = derivation
        targets: list[str] = []
        names: list[str] = []
        stamps: list[float] = []
        values: list[float] = []
        undefined = 0
        for (target, name), derivation in wanted.items():
            left, right = latest(target, derivation.left), latest(target, derivation.right)
            if left is None or right is None or abs(left[0] - right[0]) > MAX_SKEW_S:
                continue
            value = derivation.apply(left[1], right[1])
            if value is None:
                undefined += 1
                continue
            targets.append(target)
            names.append(name)
            stamps.append(max(left[0], right[0]))
            values.append(value)
        return targets, names, stamps, values, undefined

    def write(self, store: WindowStore, touched: np.ndarray, counters: Counter[str]) -> np.ndarray:
        """Under the monitor's lock: the derived points of the ``touched`` slots' operands,
        written to ``store``; their slots. Counted as ``derived`` (made here, not sent);
        one past a cardinality limit as ``derived_<limit>``."""

        def latest(target: str, series: str) -> tuple[float, float] | None:
            found = store.find(target, series)
            return store.latest(found) if found is not None else None

        keys = [store.key(slot) for slot in touched.tolist()]
        targets, names, stamps, values, undefined = self.points(keys, latest)
        if undefined:
            counters["derive_undefined"] += undefined
        if not names:
            return np.empty(0, dtype=np.int64)
        slots = store.slots_for(targets, names)
        for mark in slots[slots < 0].tolist():
            counters[f"derived_{REFUSALS[-1 - mark]}"] += 1
        taken = slots >= 0
        made = store.append(
            slots[taken],
            np.asarray(stamps, dtype=np.float64)[taken],
            np.asarray(values, dtype=np.float64)[taken],
        )
        counters["derived"] += made.accepted
        return made.touched
