"""Dependency audit: known vulnerabilities, yanked releases and broken requirements.

    .venv/bin/python .ci/audit_deps.py          # ./dev audit; ./dev test runs it first

Three checks on the project's virtualenv, each saying plainly when it could not run:
1. pip-audit against the vulnerability service (PyPI's per-release JSON, OSV). Machines
   that reach only a package mirror cannot ask it: then the report says so and why,
   instead of passing silently. A known vulnerability fails the audit (exit 1).
2. Yanked releases, from the package index's own simple API (PEP 691), which mirrors
   serve: an installed version its maintainers withdrew is reported with their reason.
3. ``pip check``: every installed requirement is satisfied.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

INDEX = "https://pypi.org/simple"
VENV_BIN = Path(sys.executable).parent


def vulnerabilities() -> tuple[int, str]:
    """(exit code, report) of pip-audit over this environment."""
    tool = VENV_BIN / "pip-audit"
    if not tool.exists():
        return 0, "vulnerabilities: NOT CHECKED (pip-audit is not installed in the venv)"
    proc = subprocess.run(
        [str(tool), "--format", "json", "--progress-spinner", "off", "--skip-editable"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return 0, "vulnerabilities: NOT CHECKED (pip-audit failed: " + " | ".join(tail) + ")"
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    found = [(d["name"], d["version"], v["id"]) for d in deps for v in d.get("vulns", [])]
    if deps and len(skipped) == len(deps):
        return 0, (
            f"vulnerabilities: NOT CHECKED: the vulnerability service answered for none of "
            f"{len(deps)} distributions ({skipped[0]['skip_reason']}). This machine reaches a "
            "package mirror, not PyPI's per-release JSON API nor OSV; run `./dev audit` where "
            "those are reachable."
        )
    lines = [f"vulnerabilities: {len(deps) - len(skipped)} distributions checked, "
             f"{len(skipped)} could not be, {len(found)} known vulnerabilities"]
    lines += [f"  VULNERABLE {name} {version}: {vid}" for name, version, vid in found]
    lines += [f"  not checked: {d['name']} ({d['skip_reason']})" for d in skipped[:10]]
    return (1 if found else 0), "\n".join(lines)


def file_version(filename: str) -> Version | None:
    """The release a distribution file belongs to (wheel or sdist), None when unparsable."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def yanked_release(client: httpx.Client, name: str, version: str) -> str | None:
    """The yank reason when every file of ``name==version`` is yanked, else None."""
    response = client.get(
        f"{INDEX}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    response.raise_for_status()
    wanted = Version(version)
    files = [f for f in response.json().get("files", []) if file_version(f["filename"]) == wanted]
    if files and all(f.get("yanked") for f in files):
        reason = files[0]["yanked"]
        return reason if isinstance(reason, str) and reason else "no reason given"
    return None


def yanked() -> tuple[int, str]:
    installed = metadata.distributions()
    dists = sorted({(canonicalize_name(d.metadata["Name"]), d.version) for d in installed})
    dists = [(n, v) for n, v in dists if not n.startswith("mendloop")]  # ours, not on the index
    results: list[tuple[str, str, str | Exception | None]] = []
    with httpx.Client(timeout=20, follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:

        def one(dist: tuple[str, str]) -> tuple[str, str, str | Exception | None]:
            try:
                return dist[0], dist[1], yanked_release(client, *dist)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                return dist[0], dist[1], exc

        results = list(pool.map(one, dists))
    failed = [r for r in results if isinstance(r[2], Exception)]
    bad = [r for r in results if isinstance(r[2], str)]
    if len(failed) == len(results):
        return 0, f"yanked releases: NOT CHECKED (the index did not answer: {failed[0][2]})"
    lines = [f"yanked releases: {len(results) - len(failed)} of {len(results)} checked, "
             f"{len(bad)} yanked"]
    lines += [f"  YANKED {n} {v}: {why}" for n, v, why in bad]
    lines += [f"  not checked: {n} {v} ({err})" for n, v, err in failed[:10]]
    return (1 if bad else 0), "\n".join(lines)


def requirements() -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    text = (proc.stdout + proc.stderr).strip()
    return proc.returncode, f"requirements (pip check): {text or 'ok'}"


def main() -> int:
    worst = 0
    for check in (vulnerabilities, yanked, requirements):
        code, report = check()
        print(report, file=sys.stderr)
        worst = max(worst, code)
    print(f"dependency audit: {'FAILED' if worst else 'passed (see NOT CHECKED lines)'}",
          file=sys.stderr)
    return worst


if __name__ == "__main__":
    sys.exit(main())
