"""`mendloop rules check|test`: validate rule files, and try them before deploying.

    mendloop rules check [PATH ...] [--json]           exit 2, one `file:line: reason` per error
    mendloop rules test [PATH ...] --scenario FAULT [--intensity X] [--seconds N] [--json]
    mendloop rules test [PATH ...] --window FILE.jsonl [--json]

Heavy imports stay inside the commands: the CLI must start fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loop.config import Settings

EXIT_INVALID = 2


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Any, list[Any], list[Any]]:
    """Catalog, rules and every error of the files named (default: the rules directory)."""
    from loop.errors import RuleFileError
    from rules.catalog import load_catalog
    from rules.compiler import faults_for
    from rules.loader import check_paths

    try:
        catalog = load_catalog(settings.rules_dir / "metrics.yaml")
        faults = faults_for(settings.rules_dir)
    except RuleFileError as exc:
        return None, [], [exc]
    paths = [Path(p) for p in args.path] or [settings.rules_dir]
    specs, errors = check_paths(paths, catalog, faults)
    return catalog, specs, errors


def _report_errors(errors: list[Any], as_json: bool) -> int:
    from loop.cli import print_json

    if as_json:
        print_json(
            {
                "ok": False,
                "errors": [{"file": e.path, "line": e.line, "reason": e.reason} for e in errors],
            }
        )
    else:
        for error in errors:
            print(error)
        print(f"{len(errors)} error(s): rules refused", file=sys.stderr)
    return EXIT_INVALID


def cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    from loop.cli import print_json

    catalog, rules, errors = _load(args, settings)
    if errors:
        return _report_errors(errors, args.json)
    result = {"metrics": len(catalog), "rules": [r.id for r in rules], "ok": True}
    if args.json:
        print_json(result)
    else:
        print(f"ok: {len(catalog)} metrics, {len(rules)} rules ({', '.join(result['rules'])})")
    return 0


def cmd_rules_test(args: argparse.Namespace, settings: Settings) -> int:
    from loop.cli import print_json
    from loop.errors import RuleFileError
    from rules.tester import render, replay, twin_batches, window_batches

    catalog, rules, errors = _load(args, settings)
    if errors:
        return _report_errors(errors, args.json)
    injected_at = None
    if args.window:
        try:
            batches: Any = window_batches(Path(args.window))
        except (OSError, RuleFileError) as exc:
            return _report_errors(
                [
                    exc
                    if isinstance(exc, RuleFileError)
                    else RuleFileError(args.window, None, str(exc))
                ],
                args.json,
            )
    else:
        from twin.faults import FAULTS

        fault = None if args.scenario == "none" else args.scenario
        if fault is not None and fault not in FAULTS:
            known = ", ".join(sorted(FAULTS))
            print(f"unknown twin fault {fault!r}; known: none, {known}", file=sys.stderr)
            return EXIT_INVALID
        start = 1_800_000_000.0
        batches = twin_batches(
            fault,
            target=args.target,
            intensity=args.intensity,
            seconds=args.seconds,
            warmup_s=args.warmup,
            start=start,
            seed=args.seed,
        )
        injected_at = start + args.warmup if fault is not None else None
    run = replay(catalog, rules, batches, injected_at=injected_at)
    if args.json:
        print_json(run.as_dict())
    else:
        print(render(run))
    return 0


def register(sub: Any) -> None:
    """Add `rules` and its sub-commands to the top-level sub-parsers."""
    rules = sub.add_parser("rules", help="rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rule files (errors with file:line)")
    check.set_defaults(func=cmd_rules_check)
    check.add_argument("path", nargs="*", help="rule files or directories (default: rules/)")
    check.add_argument("--json", action="store_true")

    test = rules_sub.add_parser(
        "test", help="replay a recorded window or a twin scenario through rule files"
    )
    test.set_defaults(func=cmd_rules_test)
    test.add_argument("path", nargs="*", help="rule files or directories (default: rules/)")
    source = test.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", metavar="FAULT", help="a twin fault (or `none`)")
    source.add_argument("--window", metavar="FILE", help="JSONL samples (docs/RULES.md)")
    test.add_argument("--intensity", type=float, default=1.0)
    test.add_argument("--seconds", type=int, default=120, help="after the injection")
    test.add_argument("--warmup", type=int, default=10, help="healthy seconds first")
    test.add_argument("--target", default="pm-site-1")
    test.add_argument("--seed", type=int, default=0)
    test.add_argument("--json", action="store_true")
