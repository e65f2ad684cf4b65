"""A site for the lab (mendloop/servicelab.py): one folder that includes packs, maps the
lab's targets onto inventory hosts (the included packs' alerts.yaml compose with the site's,
as every part does: docs/SITES.md).

    site = write_site(tmp / "site", "redis-lab", include=["redis"],
                      targets={"redis-1": {"components": ["redis"], "device_type": "redis",
                                           "hosts": ["redis-1"]}},
                      hosts={"redis-1": {"mendloop_redis": {...}, "mendloop_processes": {...}}})
    assert check(site) == []          # the problems `mendloop site check` prints

Hosts run locally (the lab's services are on this machine): each gets
``ansible_connection: local`` and this interpreter, besides the given variables.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sites import check_site


def write_site(
    dest: Path,
    name: str,
    include: Sequence[str],
    targets: Mapping[str, Mapping[str, Any]],
    hosts: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write the site (site.yaml, domain.yaml with ``targets``, inventory/hosts.yaml with
    ``hosts``); returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "name": name,
        "description": "written by the service lab",
        "include": list(include),
    }
    if defaults:
        manifest["defaults"] = dict(defaults)
    if settings:
        manifest["settings"] = dict(settings)
    dump(dest / "site.yaml", manifest)
    dump(dest / "domain.yaml", {"targets": {t: dict(spec) for t, spec in targets.items()}})
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"hosts": {h: {**local, **dict(v)} for h, v in hosts.items()}}}
    (dest / "inventory").mkdir(exist_ok=True)
    dump(dest / "inventory" / "hosts.yaml", inventory)
    return dest


def check(site: Path) -> list[str]:
    """Every problem of the site, as `mendloop site check` prints them."""
    return [str(p) for p in check_site(site).problems]


def dump(path: Path, doc: Any) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
