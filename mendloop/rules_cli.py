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

from kernel.config import Settings
from kernel.errors import RuleFileError
from mendloop.output import print_json
from mendloop.rules_tester import render, replay, twin_batches, window_batches
from rules.loader import check_paths
from sites import check_site
from twin.faults import FAULTS

EXIT_INVALID = 2


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Any, list[Any], list[Any]]:
    """Catalog, rules and every error of the files named (default: the site's rules),
    against the site's catalog and faults; a site that does not hold together: its
    problems."""
    report = check_site(settings.site_dir)
    if report.site is None:
        return None, [], [RuleFileError(p.file, p.line, p.reason) for p in report.problems]
    site = report.site
    if not args.path:
        return site.catalog, list(site.rules), []
    paths = [Path(p) for p in args.path]
    specs, errors = check_paths(paths, site.catalog, dict(site.domain.faults))
    return site.catalog, specs, errors


def _report_errors(errors: list[Any], as_json: bool) -> int:
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
    catalog, rules, errors = _load(args, settings)
    if errors:
        return _report_errors(errors, args.json)
    names = [r.id for r in rules]
    if args.json:
        print_json({"metrics": len(catalog), "rules": names, "ok": True})
    else:
        print(f"ok: {len(catalog)} metrics, {len(rules)} rules ({', '.join(names)})")
    return 0


def cmd_rules_test(args: argparse.Namespace, settings: Settings) -> int:
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
