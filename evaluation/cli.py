"""`mendloop eval rca|nab|smd`: accuracy figures for docs/EVALUATION.md."""

from __future__ import annotations

import argparse
from typing import Any

from loop.config import Settings
from loop.errors import MendloopError


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    raise MendloopError(f"eval {args.kind} is not implemented yet")


def register(sub: Any) -> None:
    """Add `eval` to the top-level sub-parsers."""
    ev = sub.add_parser("eval", help="accuracy: twin fault scenarios, public datasets")
    ev.set_defaults(func=cmd_eval)
    ev.add_argument("kind", choices=("rca", "nab", "smd"))
    ev.add_argument("--json", action="store_true", help="one JSON object on stdout")
