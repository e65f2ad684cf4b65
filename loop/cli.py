"""The `mendloop` command line (DESIGN.md, command-line contract).

Commands that report figures take --json and then print exactly one JSON object on stdout;
progress and logs go to stderr. Errors of ours (MendloopError) print one clear line and
exit 2 instead of a stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from loop.config import Settings, load_settings
from loop.errors import MendloopError


def print_json(obj: object) -> None:
    print(json.dumps(obj, default=str))


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from loop.service import run

    return run(settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from loop.demo import run_demo
    from twin.model import FAULTS

    faults = [f.strip() for f in args.faults.split(",") if f.strip()] if args.faults else None
    if faults == ["all"]:
        faults = list(FAULTS)
    unknown = [f for f in faults or () if f not in FAULTS]
    if unknown:
        raise MendloopError(
            f"unknown fault(s) {', '.join(unknown)}; the twin knows: {', '.join(sorted(FAULTS))}"
        )
    return run_demo(settings, faults, args.json)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from loop.doctor import as_dict, run_checks

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


def cmd_neo4j(args: argparse.Namespace, settings: Settings) -> int:
    from knowledge import local_neo4j
    from loop.service import stderr_progress

    if args.action == "start":
        local_neo4j.ensure_built(stderr_progress)
        status = local_neo4j.start(settings)
    elif args.action == "stop":
        stopped = local_neo4j.stop(settings)
        status = local_neo4j.status(settings)
        stderr_progress("stopped" if stopped else "was not running")
    else:
        status = local_neo4j.status(settings)
    if args.json:
        print_json(status.__dict__)
    else:
        state = "running" if status.running else "stopped"
        print(
            f"neo4j {state} (pid {status.pid}) {status.uri} bolt_ok={status.bolt_ok} "
            f"{status.detail}"
        )
    return 0 if args.action == "stop" or status.running else 1


def cmd_twin(args: argparse.Namespace, settings: Settings) -> int:
    from twin.server import run_forever

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    run_forever(
        targets=targets,
        seed=args.seed,
        tick_s=args.tick,
        host=settings.twin_host,
        port=settings.twin_port,
        push=args.push,
        token=settings.api_token,
    )
    return 0


def cmd_twin_control(args: argparse.Namespace, settings: Settings) -> int:
    """Drive a running twin through its HTTP control surface (what a playbook does too)."""
    import httpx

    url = args.url or f"http://{settings.twin_host}:{settings.twin_port}"
    if args.twin_command == "inject":
        path, body = "/faults", {"target": args.target, "fault": args.fault}
        if args.intensity is not None:
            body["intensity"] = args.intensity
    else:
        path, body = "/clear", {"target": args.target}
    try:
        response = httpx.post(f"{url}{path}", json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise MendloopError(
            f"twin not reachable at {url} ({exc}); start it: mendloop twin run"
        ) from exc
    if response.status_code >= 400:
        raise MendloopError(f"twin refused: HTTP {response.status_code} {response.text}")
    state = response.json()
    state.pop("values", None)  # the 286 current values: GET <twin>/state/<target> has them
    print_json(state)
    return 0


def auth_headers(settings: Settings) -> dict[str, str]:
    """The CLI's token (MENDLOOP_API_TOKEN) for calls to the daemon's API."""
    return {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}


def cmd_verdict(args: argparse.Namespace, settings: Settings) -> int:
    """Approve or reject a waiting fix through the running daemon's REST API, the same
    call a person or the chat integration makes; an approval names the plan it approves
    (``--plan-hash``, else the current plan, shown on stderr: loop/verdict.py)."""
    from loop.verdict import verdict

    incident = verdict(
        args.url or f"http://{settings.api_host}:{settings.api_port}",
        args.incident,
        args.command,
        by=args.by,
        comment=args.comment,
        plan_hash=getattr(args, "plan_hash", None),
        headers=auth_headers(settings),
        say=lambda line: print(line, file=sys.stderr),
    )
    if args.json:
        print_json(incident)
    else:
        print(f"incident {incident['id']}: {incident['state']}")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Backtest: recorded incidents through the rules, ML baselines and knowledge on disk
    now (or ``--rules DIR`` / ``--models DIR``), from their recorded samples where there
    are any (else from their findings)."""
    from knowledge.embedding import Embedder
    from loop.analyze import Analyzer
    from loop.decide import Decider
    from loop.recorder import recording_path
    from loop.replay import backtest
    from loop.service import connect_graph, stderr_progress
    from loop.solutions import load_library
    from loop.store import IncidentStore
    from rules.catalog import load_catalog
    from rules.compiler import load_rules
    from rules.tester import window_batches

    catalog = load_catalog(settings.rules_dir / "metrics.yaml")
    rules = load_rules(catalog, args.rules or settings.rules_dir)
    store = IncidentStore(settings.database_url)
    if args.incident:
        incidents = [store.get(i) for i in args.incident]
        missing = [i for i, view in zip(args.incident, incidents, strict=True) if view is None]
        if missing:
            raise MendloopError(f"no incident {', '.join(missing)} in {settings.database_url}")
    else:
        incidents = store.list(target=args.target, limit=args.limit)
    recordings = settings.var_dir / "recordings"
    model_dir = args.models or settings.var_dir / "models"

    def recording(incident):  # type: ignore[no-untyped-def]
        path = recording_path(recordings, incident.id)
        if not path.exists():
            return None
        try:
            return window_batches(path)
        except (OSError, EOFError, MendloopError) as exc:  # a damaged file: say so, go on
            stderr_progress(f"{incident.id}: recording unreadable ({exc}); replaying findings")
            return None

    graph = connect_graph(settings)
    try:
        decider = Decider(
            graph,
            Embedder.shared(),
            settings.match_min_similarity,
            {"twin_url": f"http://{settings.twin_host}:{settings.twin_port}"},
            library=load_library(settings.playbooks_dir),
        )
        analyzer = Analyzer(catalog, rules)
        stderr_progress(f"replaying {len(incidents)} incident(s) with {len(rules)} rule(s)")
        summary = backtest(incidents, analyzer, decider, recording, model_dir)  # type: ignore[arg-type]
        analyzer.close()
    finally:
        graph.close()
        store.close()
    if args.json:
        print_json(summary)
    else:
        for r in summary["results"]:
            when = (
                f"fires {r['detected_after_s']:+.1f} s vs recorded"
                if r["detected_after_s"] is not None
                else ("not detected" if not r["detected"] else "from findings")
            )
            print(
                f"{r['incident_id']} {r['target']}: {r['recorded_fault']} -> "
                f"{r['replayed_fault']}; {r['recorded_solution']} -> {r['replayed_solution']} "
                f"({r['source']}, {when})"
            )
        print(
            f"{summary['incidents']} replayed ({summary['from_samples']} from samples): "
            f"{summary['detected']} detected, {summary['same_fault']} same fault, "
            f"{summary['same_solution']} same fix, {len(summary['changed'])} would change"
        )
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from loop.bench import bench_ingest
    from rules.catalog import load_catalog

    result = bench_ingest(
        load_catalog(settings.rules_dir / "metrics.yaml"), targets=args.targets, ticks=args.ticks
    )
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mendloop", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML config file (env vars win)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[..., int], help_: str, json_flag: bool = True):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="one JSON object on stdout")
        return p

    add("run", cmd_run, "the daemon: loop + REST API", json_flag=False)
    demo = add("demo", cmd_demo, "all local: Neo4j, twin, daemon; inject faults one by one")
    demo.add_argument(
        "--faults", help="comma-separated fault names, or `all` (default cache_saturation)"
    )
    add("doctor", cmd_doctor, "check every component and say how to fix it")
    for verdict, help_ in (
        ("approve", "let a fix waiting for approval run"),
        ("reject", "refuse a fix waiting for approval"),
    ):
        p = add(verdict, cmd_verdict, help_)
        p.add_argument("incident", help="incident id")
        p.add_argument("--comment", default="", help="why (kept in the timeline)")
        p.add_argument(
            "--by",
            default=os.environ.get("USER", "cli"),
            help="who decides, when the API runs without authentication (else: the token's name)",
        )
        p.add_argument("--url", help="daemon API (default from MENDLOOP_API_HOST/PORT)")
        if verdict == "approve":
            p.add_argument(
                "--plan-hash",
                help="the plan you reviewed (GET /v1/incidents/ID/plan), or its first 8+ hex "
                "digits; default: the current plan, shown on stderr",
            )
    replay = add("replay", cmd_replay, "backtest recorded incidents against rules/ML/knowledge")
    replay.add_argument("incident", nargs="*", help="incident ids (default: the newest)")
    replay.add_argument("--rules", type=Path, help="rule directory under test (default: rules/)")
    replay.add_argument(
        "--models", type=Path, help="ML baselines under test (default: var/models, the daemon's)"
    )
    replay.add_argument("--target", help="only incidents of this target")
    replay.add_argument("--limit", type=int, default=50, help="newest N incidents (default 50)")
    neo = add("neo4j", cmd_neo4j, "the local Neo4j for development and tests")
    neo.add_argument("action", choices=("start", "stop", "status"))
    twin = sub.add_parser("twin", help="the digital twin")
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)
    twin_run = twin_sub.add_parser("run", help="the twin alone: metrics + control API")
    twin_run.set_defaults(func=cmd_twin)
    twin_run.add_argument("--targets", default="pm-site-1")
    twin_run.add_argument("--seed", type=int, default=0)
    twin_run.add_argument("--tick", type=float, default=1.0, help="seconds between samples")
    twin_run.add_argument(
        "--push",
        help="POST samples to this URL (e.g. .../v1/samples; token: MENDLOOP_API_TOKEN)",
    )
    inject = twin_sub.add_parser("inject", help="inject a fault into a running twin")
    inject.set_defaults(func=cmd_twin_control)
    inject.add_argument("fault")
    inject.add_argument("--target", default="pm-site-1")
    inject.add_argument("--intensity", type=float, help="0..1+ (default: the fault's own)")
    inject.add_argument("--url", help="twin URL (default from MENDLOOP_TWIN_HOST/PORT)")
    clear = twin_sub.add_parser("clear", help="end every fault of a target on a running twin")
    clear.set_defaults(func=cmd_twin_control)
    clear.add_argument("--target", default="pm-site-1")
    clear.add_argument("--url")
    bench = sub.add_parser("bench", help="benchmarks (figures for docs/BENCHMARKS.md)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    ingest = bench_sub.add_parser("ingest", help="monitor ingest: samples/s and memory")
    ingest.set_defaults(func=cmd_bench)
    ingest.add_argument("--targets", type=int, default=10)
    ingest.add_argument("--ticks", type=int, default=3600, help="simulated 1 s ticks")
    ingest.add_argument("--json", action="store_true")
    from knowledge.bench import register as register_bench_match
    from loop.bench import register_rca as register_bench_rca
    from loop.flood import register as register_bench_flood

    register_bench_rca(bench_sub)
    register_bench_flood(bench_sub)
    register_bench_match(bench_sub)
    # Areas with several commands register their own (each module imports only argparse at
    # the top, so `mendloop --help` stays fast).
    from api.cli import register as register_api
    from evaluation.cli import register as register_eval
    from evaluation.cli import register_rca
    from knowledge.cli import register as register_kb
    from rules.cli import register as register_rules

    register_rules(sub)
    register_kb(sub)
    register_eval(sub)
    register_rca(sub)
    register_api(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(args.config)
        return int(args.func(args, settings))
    except MendloopError as exc:
        print(f"mendloop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
