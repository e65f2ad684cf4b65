"""`mendloop rules ...`: validate rule files (and, as it grows, test them before deploying)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loop.config import Settings


def cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    from loop.cli import print_json
    from rules.catalog import load_catalog
    from rules.compiler import load_rule_file, load_rules

    catalog = load_catalog(settings.rules_dir / "metrics.yaml")
    if args.path:
        rules = load_rule_file(Path(args.path), catalog)
    else:
        rules = load_rules(catalog, settings.rules_dir)
    result = {"metrics": len(catalog), "rules": [r.id for r in rules], "ok": True}
    if args.json:
        print_json(result)
    else:
        print(f"ok: {len(catalog)} metrics, {len(rules)} rules ({', '.join(result['rules'])})")
    return 0


def register(sub: Any) -> None:
    """Add `rules` and its sub-commands to the top-level sub-parsers."""
    rules = sub.add_parser("rules", help="rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rule files (errors with file:line)")
    check.set_defaults(func=cmd_rules_check)
    check.add_argument("path", nargs="?", help="one rule file (default: all in rules/)")
    check.add_argument("--json", action="store_true")
