"""Extra vars as Ansible reads them safely: a YAML file where every string is ``!unsafe``.

    text = unsafe_yaml({"target": "{{ lookup('pipe', 'id') }}", "twin_url": url, "n": 3})
    (private / "env" / "extravars").write_text(text)   # ansible-runner passes -e @file

Everything in a decision's extra vars may come from outside (a metric label, a graph
value, a person's parameter), and ansible-core renders extra-var strings as Jinja
templates unless they carry its own unsafe mark. Here each string is written with the
``!unsafe`` YAML tag, which ansible-core turns into untrusted / ``AnsibleUnsafeText``
data: a playbook's ``{{ target }}`` then yields the literal text and never evaluates what
is inside it. Only a string that YAML would read back as another type (``"123"``,
``"yes"``, ``"null"``, a date: text without ``{``, ``%`` or ``#``, so nothing Jinja could
act on) is written quoted but untagged, because ansible-core 2.19 re-resolves the plain
type of an ``!unsafe`` scalar (``!unsafe '123'`` arrives as the int 123) and the value
must arrive as the string it is. Top-level names must be variable names.
Pure: no I/O here; loop/runner.py writes the file into the run's private data dir, so the
values never appear on a command line (``ps``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

UNSAFE_TAG = "!unsafe"
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STR_TAG = "tag:yaml.org,2002:str"
_JINJA_CHARS = frozenset("{%#")
_RESOLVER = yaml.resolver.Resolver()


class _Unsafe(str):
    """A string to be written with the ``!unsafe`` tag."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_unsafe(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.ScalarNode:
    return dumper.represent_scalar(UNSAFE_TAG, str(value), style='"')


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(_STR_TAG, value, style='"')


_Dumper.add_representer(_Unsafe, _represent_unsafe)
_Dumper.add_representer(str, _represent_str)


def _reads_as_str(text: str) -> bool:
    """Whether YAML's implicit typing of the plain text is a string (what ansible-core
    2.19 applies to an ``!unsafe`` scalar)."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
    return tag == _STR_TAG


def mark_unsafe(value: Any, where: str = "extra vars") -> Any:
    """``value`` with every string (keys of nested mappings too) to be tagged unsafe;
    TypeError for what is not plain data (scalars, lists, mappings with string keys),
    ValueError for text that is not valid unicode (a lone surrogate)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{where}: not valid unicode text ({exc.reason})") from exc
        if _reads_as_str(value) or _JINJA_CHARS & set(value):
            return _Unsafe(value)
        return str(value)  # "123", "true", "null": no Jinja in them, kept a string
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, Mapping):
        marked = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            marked[mark_unsafe(key, where)] = mark_unsafe(item, f"{where}[{key!r}]")
        return marked
    if isinstance(value, list | tuple):
        return [mark_unsafe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not plain data")


def unsafe_yaml(extra_vars: Mapping[str, Any]) -> str:
    """The YAML text of the extra vars with every string tagged ``!unsafe``; TypeError
    or ValueError when a name is not a variable name or a value is not plain data."""
    document: dict[str, Any] = {}
    for name, value in extra_vars.items():
        if not isinstance(name, str) or not VAR_NAME.fullmatch(name):
            raise ValueError(f"extra var name {name!r} is not a variable name")
        document[name] = mark_unsafe(value, name)
    return yaml.dump(
        document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, default_flow_style=False
    )
