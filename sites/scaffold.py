"""`mendloop init DIR`: a working empty site, every file with commented examples.

    written = scaffold(Path("my-site"))     # the files written; SiteError if DIR has a site

The site passes `mendloop site check` as written (everything is commented out but the
name and a local inventory host), and the daemon starts on it and waits for data. The
format is docs/SITES.md; the walk-through from here to a verified fix, docs/ONBOARDING.md.
"""

from __future__ import annotations

from pathlib import Path

from kernel.errors import SiteError

FILES: dict[str, str] = {
    "site.yaml": """\
# The site: one directory that describes your estate (docs/SITES.md).
name: {name}
description: my estate
# bundled packs to include (packs/<name>/ of mendloop, or this site's own packs/<name>/)
include: []
#   - linux-host        # restart a process, free disk space, rotate logs, flush a cache
# settings of mendloop (any non-secret setting of the README's table; the environment
# and --config win over these)
settings: {{}}
#   api_port: 8080
#   prometheus_url: http://127.0.0.1:9090
# site-wide parameter defaults: a solution parameter of this name takes this value when
# no label of the series that fired and no inventory variable gives one
defaults: {{}}
#   clean_dir: /var/log/myapp
# inventory hosts for targets not otherwise mapped (domain.yaml targets: hosts, or an
# inventory host/group named like the target)
default_hosts: []
#   - localhost
""",
    "domain.yaml": """\
# What your estate is made of (docs/SITES.md, domain.yaml).
components: {}
#   cache: {depends_on: []}
#   api: {depends_on: [cache]}          # api calls cache: a failing cache degrades api
faults: {}
#   cache_down: {component: cache, title: the cache process is not running}
device_types: {}
#   redis: cache
environment: {}
#   load: [low, normal, peak]
regions: {}
#   Europe: {Paris: {Central: [dc-1]}}   # province > city > district > [station areas]
targets: {}
#   cache-1:
#     components: [cache]
#     device_type: redis
#     hosts: [localhost]                 # inventory hosts its playbooks run on
""",
    "metrics.yaml": """\
# The metric catalog: every series mendloop watches (docs/SITES.md, metrics.yaml).
metrics: []
#   - name: redis_up
#     unit: bool
#     subsystem: cache                  # the component (of domain.yaml) it tells about
#     layer: system
#     bad: low                          # low values are bad
#     warn: 1
#     crit: 0.5
#     duration_s: 5                     # breached this long before it counts
#     sqi_role: none
#     description: 1 when the exporter reaches redis
""",
    "rules/example.yaml": """\
# Analysis rules (docs/RULES.md): conditions on one target's series -> a fault.
rules: []
#   - id: cache-down
#     fault: cache_down
#     summary: redis is not answering its exporter
#     all:
#       - series: redis_up
#         below: 1
#         for: 10s
""",
    "solutions/example.yaml": """\
# The solution library (docs/REMEDIATION.md, docs/SITES.md): what may run for a fault.
# Playbook paths are relative to this site's playbooks/.
[]
# - id: sol-restart-cache
#   title: Restart the cache
#   faults: [cache_down]
#   risk: low
#   playbook: restart_cache.yml
#   check_mode: true
#   no_rollback: a restart cannot be undone
#   parameters:
#     service: {type: str, pattern: '[a-z][a-z0-9@._-]*', from_inventory: cache_service}
#   verification:
#     metrics: [redis_up]
#     sqi_min: null
""",
    "playbooks/README.md": """\
The Ansible playbooks (and roles) that this site's solutions name. Each runs with this
folder as its project dir, on the target's inventory hosts only, and receives its
parameters and `target` as extra vars marked unsafe (never templated).
""",
    "cases/example.jsonl": "",
    "inventory/hosts.yaml": """\
# An Ansible inventory (docs/SITES.md, inventory/): the hosts playbooks run on and how
# to reach them; group_vars/ and host_vars/ beside this file hold their variables.
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
""",
}


def scaffold(root: Path) -> list[Path]:
    """Write the empty site into ``root`` (created); refuses a directory with a site."""
    if (root / "site.yaml").exists():
        raise SiteError(str(root), [f"{root / 'site.yaml'}: a site is already there"])
    written = []
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            continue
        path.write_text(text.format(name=root.resolve().name) if name == "site.yaml" else text)
        written.append(path)
    return written
