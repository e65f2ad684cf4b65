"""What one run may touch and what it hands back: the ``--limit`` of its hosts, and the
values its playbook published with ``set_stats`` for the rollback (docs/SITES.md).

    host_limit(("box-1",), required=True)       # "box-1"; ValueError for a pattern
    captured_of(artifact_data)                  # {} unless small plain data with var names

Pure; loop/runner.py uses both.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from loop.extravars import VAR_NAME

log = logging.getLogger("mendloop.runner")

MAX_CAPTURED_CHARS = 16_384  # set_stats values kept for a rollback, at most (JSON)


def captured_of(data: Any) -> dict[str, Any]:
    """What a playbook published with ``set_stats`` (ansible-runner's ``artifact_data`` of
    its stats event), kept when every name is a variable name and the whole is small
    plain data; {} otherwise (a rollback then gets no captured values, never bad ones)."""
    if not isinstance(data, dict) or not data:
        return {}
    if not all(isinstance(k, str) and VAR_NAME.fullmatch(k) for k in data):
        log.warning("set_stats names that are not variable names: not kept")
        return {}
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):
        return {}
    if len(text) > MAX_CAPTURED_CHARS:
        log.warning("set_stats data of %d chars: not kept (max %d)", len(text), MAX_CAPTURED_CHARS)
        return {}
    kept: dict[str, Any] = json.loads(text)
    return kept


_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def host_limit(hosts: tuple[str, ...], required: bool) -> str | None:
    """The ``--limit`` of a run: plain inventory host names only (no pattern syntax such
    as ``,`` ``!`` ``&`` ``~`` ``*`` ``:``), or ValueError. None: no limit."""
    if not hosts:
        if required:
            raise ValueError("no inventory host for the target: nothing to run on")
        return None
    for host in hosts:
        if not isinstance(host, str) or not _HOST.match(host):
            raise ValueError(f"host {host!r} is not a plain inventory host name")
    return ",".join(hosts)
