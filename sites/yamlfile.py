"""YAML with line numbers: every entry of a site file knows where it was written.

doc = read_yaml(path, problems)              # None (and a Problem) when unreadable
line = doc.line(("faults", "cache_saturation"))
for key, value, line in doc.mapping_entries("faults"): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sites.model import Problem


@dataclass(frozen=True)
class Doc:
    """A parsed YAML file: its data and its node tree (for lines)."""

    path: Path
    data: Any
    root: yaml.Node | None

    def line(self, loc: tuple[str | int, ...] = ()) -> int:
        """The line (1-based) of the deepest node along ``loc`` that exists."""
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for step in loc:
            child: tuple[yaml.Node | None, yaml.Node] | None = None
            if isinstance(node, yaml.MappingNode):
                child = next(((k, v) for k, v in reversed(node.value) if k.value == step), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                child = (None, node.value[step]) if step < len(node.value) else None
            if child is None:
                break
            key, node = child
            line = (key or node).start_mark.line + 1
        return line

    def section(self, key: str) -> Any:
        return self.data.get(key) if isinstance(self.data, dict) else None

    def mapping_entries(self, key: str) -> Iterator[tuple[str, Any, int]]:
        """(name, value, line) of each entry of the top-level mapping ``key``."""
        section = self.section(key)
        if isinstance(section, dict):
            for name, value in section.items():
                yield str(name), value, self.line((key, name))

    def list_entries(self, key: str | None) -> Iterator[tuple[int, Any, int]]:
        """(index, value, line) of each item of the top-level list ``key`` (None: the
        document itself is the list)."""
        items = self.data if key is None else self.section(key)
        if isinstance(items, list):
            for index, value in enumerate(items):
                loc: tuple[str | int, ...] = (index,) if key is None else (key, index)
                yield index, value, self.line(loc)


def read_yaml(path: Path, problems: list[Problem]) -> Doc | None:
    """The file parsed, or None with the reason appended to ``problems``."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as exc:
        problems.append(Problem(str(path), None, f"cannot read: {exc}"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(str(path), mark.line + 1 if mark else None, f"bad YAML: {exc}"))
        return None
    except RecursionError:
        problems.append(Problem(str(path), 1, "YAML nested too deeply"))
        return None
    return Doc(path, data, root)
