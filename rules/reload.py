"""Where the daemon's rules come from, and when they changed (hot reload).

    source = RuleSource(settings.rules_dir, catalog)
    if source.changed():                     # cheap: mtimes and sizes of the rule files
        specs, errors = source.load()        # errors: every RuleFileError (file:line)

A reload is all or nothing: a set with any error is refused whole and the running rules
stay (the daemon keeps the errors for a future ``/v1/rules`` endpoint).
"""

from __future__ import annotations

from pathlib import Path

from kernel.errors import RuleFileError
from rules.catalog import Catalog
from rules.compiler import faults_for
from rules.loader import check_paths, rule_files
from rules.spec import RuleSpec

Stamp = tuple[tuple[str, int, int], ...]


class RuleSource:
    def __init__(self, rules_dir: Path, catalog: Catalog) -> None:
        self.rules_dir = rules_dir
        self.catalog = catalog
        self._stamp = self.stamp()

    def stamp(self) -> Stamp:
        """(name, mtime_ns, size) of every rule file."""
        paths = rule_files(self.rules_dir)
        out = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            out.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(out)

    def changed(self) -> bool:
        """True once per change of the files (the new stamp is remembered)."""
        stamp = self.stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def load(self) -> tuple[list[RuleSpec], list[RuleFileError]]:
        try:
            faults = faults_for(self.rules_dir)
        except RuleFileError as exc:
            return [], [exc]
        return check_paths([self.rules_dir], self.catalog, faults)
