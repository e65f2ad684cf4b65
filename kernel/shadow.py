"""Shadow mode's scope (``MENDLOOP_SHADOW``): a setting, parsed and validated with Settings.

    scope = ShadowScope.parse("target:pm-site-2,solution:sol-voltage-dvr")
    scope.applies("pm-site-2", "sol-cache-scale-out")   # 'shadow mode for target pm-site-2'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShadowScope:
    """Where the loop runs fully but executes nothing (it records what it would have
    done, so operators can compare with what people did before granting autonomy).

    >>> ShadowScope.parse("target:pm-site-2,solution:sol-voltage-dvr").applies(
    ...     "pm-site-2", "sol-cache-scale-out")
    'shadow mode for target pm-site-2'
    """

    everywhere: bool = False
    targets: frozenset[str] = frozenset()
    solutions: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> ShadowScope:
        """``all``, or comma-separated ``target:NAME`` / ``solution:ID``; empty: none."""
        items = [i.strip() for i in text.split(",") if i.strip()]
        if items == ["all"]:
            return cls(everywhere=True)
        targets, solutions = set(), set()
        for item in items:
            kind, _, name = item.partition(":")
            if kind == "target" and name:
                targets.add(name)
            elif kind == "solution" and name:
                solutions.add(name)
            else:
                raise ValueError(f"shadow scope {item!r}: expected all, target:NAME or solution:ID")
        return cls(False, frozenset(targets), frozenset(solutions))

    def applies(self, target: str, solution_id: str) -> str | None:
        """Why this fix is shadowed here (None: it is not)."""
        if self.everywhere:
            return "shadow mode everywhere"
        if target in self.targets:
            return f"shadow mode for target {target}"
        if solution_id in self.solutions:
            return f"shadow mode for solution {solution_id}"
        return None
