"""Reading a YAML content file so that every error can point at file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kernel.errors import RuleFileError


def read_yaml_list(path: Path, key: str) -> tuple[str, list[Any]]:
    """The file's text and its top-level ``key:`` list; RuleFileError otherwise."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except OSError as exc:
        raise RuleFileError(str(path), None, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(str(path), mark.line + 1 if mark else None, str(exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise RuleFileError(str(path), 1, f"expected a top-level `{key}:` list")
    return text, data[key]


def line_of(text: str, needle: str) -> int | None:
    """First line (1-based) that contains ``needle``: where an entry starts in the file."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def entry_name(entry: Any, field: str, index: int) -> str:
    return str(entry.get(field, f"#{index}")) if isinstance(entry, dict) else f"#{index}"
