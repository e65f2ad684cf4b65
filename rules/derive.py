"""Derived series for push intakes: a catalog entry computed from two others of the same
target, in a tiny language that is parsed, never evaluated as code.

    - name: redis_memory_used_ratio
      derive: redis_memory_used_bytes / redis_memory_max_bytes
      ...                                 # unit, thresholds, as any entry

    expression := series OP series        OP: "/" ratio, "-" difference, "+" sum

Both operands are catalog series (not derived ones). The monitor computes the entry for a
target whenever either operand gets a new point and both have one no more than
``MAX_SKEW_S`` apart; the derived point carries the newer timestamp. A ratio over zero
makes no point (counted as ``derive_undefined``). For the Prometheus pull, give the entry
``expr:`` (PromQL) instead: Prometheus evaluates it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Op = Literal["/", "-", "+"]
MAX_SKEW_S = 60.0
_EXPRESSION = re.compile(r"\s*([a-z][a-z0-9_]{0,199})\s*([/+-])\s*([a-z][a-z0-9_]{0,199})\s*")


@dataclass(frozen=True)
class Derivation:
    left: str
    op: Op
    right: str

    @property
    def operands(self) -> tuple[str, str]:
        return self.left, self.right

    def apply(self, left: float, right: float) -> float | None:
        """The derived value, or None where it is undefined (a ratio over zero)."""
        if self.op == "/":
            return left / right if right != 0 else None
        return left - right if self.op == "-" else left + right

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


def parse_derivation(text: str) -> Derivation:
    """``"a / b"`` -> Derivation; ValueError (with the grammar) for anything else."""
    found = _EXPRESSION.fullmatch(text)
    if found is None:
        raise ValueError(
            f"derive {text[:80]!r}: expected 'series OP series' with OP one of / - +"
        )
    left, op, right = found.groups()
    if left == right:
        raise ValueError(f"derive {text!r}: the two operands must differ")
    return Derivation(left, op, right)  # type: ignore[arg-type]  # op is one of "/+-"
