"""Where the daemon's rules come from, and when they changed (hot reload).

    source = RuleSource(site_rule_dirs, rule_loader(site))     # mendloop/service.py
    source = RuleSource.for_dir(rules_dir, catalog)            # one folder, the pack's faults
    if source.changed():                     # cheap: mtimes and sizes of the rule files
        specs, errors = source.load()        # errors: every RuleFileError (file:line)

A reload is all or nothing: a set with any error is refused whole and the running rules
stay (the daemon keeps the errors for ``/v1/rules``). What ``load`` reads is the site's
composition of its packs' and its own rule files (sites/load.py ``rule_loader``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from kernel.errors import RuleFileError
from rules.catalog import Catalog
from rules.compiler import faults_for
from rules.loader import check_paths, rule_files
from rules.spec import RuleSpec

Stamp = tuple[tuple[str, int, int], ...]
Loader = Callable[[], tuple[list[RuleSpec], list[RuleFileError]]]


class RuleSource:
    def __init__(self, dirs: Sequence[Path], load: Loader) -> None:
        self.dirs = tuple(dirs)
        self._load = load
        self._stamp = self.stamp()

    @classmethod
    def for_dir(cls, rules_dir: Path, catalog: Catalog) -> RuleSource:
        """The rule files of one folder against ``catalog`` and the power-marketing faults."""

        def load() -> tuple[list[RuleSpec], list[RuleFileError]]:
            try:
                faults = faults_for(rules_dir)
            except RuleFileError as exc:
                return [], [exc]
            return check_paths([rules_dir], catalog, faults)

        return cls([rules_dir], load)

    def stamp(self) -> Stamp:
        """(path, mtime_ns, size) of every rule file."""
        out = []
        for folder in self.dirs:
            for path in rule_files(folder) if folder.is_dir() else []:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                out.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(out)

    def changed(self) -> bool:
        """True once per change of the files (the new stamp is remembered)."""
        stamp = self.stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def load(self) -> tuple[list[RuleSpec], list[RuleFileError]]:
        return self._load()
