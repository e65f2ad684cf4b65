"""A site's Ansible inventory (``inventory/``: hosts.yaml, group_vars/, host_vars/), read by
ansible-core's own ``ansible-inventory``, so what site check accepts is what the runner
will use.

    inventory = read_inventory(site_dir / "inventory", problems)   # None: none or unusable
    inventory.hosts["localhost"]["ansible_connection"]             # group vars merged
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sites.model import Inventory, Problem
from sites.yamlfile import read_yaml


def read_inventory(directory: Path, problems: list[Problem]) -> Inventory | None:
    """The inventory of ``directory`` or None (absent, or a problem appended)."""
    if not directory.is_dir():
        return None
    sources = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".ini")
    )
    if not sources:
        problems.append(Problem(str(directory), None, "no hosts.yaml (or .ini) in the inventory"))
        return None
    before = len(problems)
    for path in sources:
        if path.suffix != ".ini":  # YAML syntax first: its errors have lines
            read_yaml(path, problems)
    for sub in ("group_vars", "host_vars"):
        for path in sorted((directory / sub).glob("*.y*ml")) if (directory / sub).is_dir() else []:
            read_yaml(path, problems)
    if len(problems) > before:
        return None
    found = _ansible_inventory(directory, problems)
    if found is None:
        return None
    hostvars = found.get("_meta", {}).get("hostvars", {})
    groups = {
        name: tuple(sorted(_members(found, name, set()))) for name in found if name != "_meta"
    }
    hosts = {h: dict(v) for h, v in hostvars.items()}
    for members in groups.values():
        for host in members:
            hosts.setdefault(host, {})
    return Inventory(directory, hosts, groups)


def _members(found: dict[str, Any], group: str, seen: set[str]) -> set[str]:
    """The hosts of ``group`` and of its children, recursively."""
    if group in seen:
        return set()
    seen.add(group)
    entry = found.get(group) or {}
    hosts = set(entry.get("hosts") or [])
    for child in entry.get("children") or []:
        hosts |= _members(found, child, seen)
    return hosts


@functools.lru_cache(maxsize=16)
def _listed(directory: str, stamp: tuple[tuple[str, int, int], ...]) -> tuple[int, str, str]:
    """``ansible-inventory --list`` of a directory, once per content (its stamp)."""
    command = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", directory, "--list"]
    env = {
        **os.environ,
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONWARNINGS": "ignore",
    }
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return done.returncode, done.stdout, done.stderr


def _ansible_inventory(directory: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """The inventory as ansible-core's own ``ansible-inventory`` reads it (group vars
    merged into each host's): in a subprocess, so ansible's import-time patches never
    reach this process."""
    stamp = tuple(
        (str(p), p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    )
    code, out, err = _listed(str(directory.resolve()), stamp)
    if code != 0:
        reason = " ".join(line.strip() for line in err.splitlines() if line.strip())[-500:]
        problems.append(Problem(str(directory), None, f"inventory does not parse: {reason}"))
        return None
    try:
        found = json.loads(out)
    except ValueError as exc:
        problems.append(Problem(str(directory), None, f"ansible-inventory output: {exc}"))
        return None
    return found if isinstance(found, dict) else None
