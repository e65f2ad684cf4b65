"""The `mendloop` command line: one entry point, every command below (README.md, Commands).

Commands that report figures take --json and then print exactly one JSON object on stdout;
progress and logs go to stderr. Errors of ours (MendloopError) print one clear line and
exit 2 instead of a stack trace.

The parser is built from argparse alone (here and in mendloop/cli_tools.py); each command
is named ``module:function`` (``command("mendloop.demo:cmd_demo")``) and its module is
imported when the command runs. That one dynamic import is deliberate: the modules behind
the commands load FastAPI, Neo4j's driver, durable_rules and scikit-learn (1.4 s here),
which `mendloop --help` and a light command such as `mendloop approve` must not pay.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from evaluation.cli import register as register_eval
from evaluation.cli import register_rca
from kernel.config import Settings, load_settings
from kernel.errors import MendloopError
from mendloop.cli_tools import register_bench, register_kb, register_rules, register_tokens

Command = Callable[[argparse.Namespace, Settings], int]


def command(ref: str) -> Command:
    """The command ``module:function``, imported when it runs (see the module doc)."""
    module, _, name = ref.partition(":")

    def run(args: argparse.Namespace, settings: Settings) -> int:
        func: Command = getattr(importlib.import_module(module), name)
        return int(func(args, settings))

    run.__qualname__ = ref
    return run


def _register_verdicts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verdict, help_ in (
        ("approve", "let a fix waiting for approval run"),
        ("reject", "refuse a fix waiting for approval"),
    ):
        p = sub.add_parser(verdict, help=help_)
        p.set_defaults(func=command("mendloop.verdict:cmd_verdict"), plan_hash=None)
        p.add_argument("--json", action="store_true", help="one JSON object on stdout")
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


def _register_twin(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    twin = sub.add_parser("twin", help="the digital twin")
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)
    twin_run = twin_sub.add_parser("run", help="the twin alone: metrics + control API")
    twin_run.set_defaults(func=command("mendloop.commands:cmd_twin"))
    twin_run.add_argument("--targets", default="pm-site-1")
    twin_run.add_argument("--seed", type=int, default=0)
    twin_run.add_argument("--tick", type=float, default=1.0, help="seconds between samples")
    twin_run.add_argument(
        "--push",
        help="POST samples to this URL (e.g. .../v1/samples; token: MENDLOOP_API_TOKEN)",
    )
    control = command("mendloop.commands:cmd_twin_control")
    inject = twin_sub.add_parser("inject", help="inject a fault into a running twin")
    inject.set_defaults(func=control)
    inject.add_argument("fault")
    inject.add_argument("--target", default="pm-site-1")
    inject.add_argument("--intensity", type=float, help="0..1+ (default: the fault's own)")
    inject.add_argument("--url", help="twin URL (default from MENDLOOP_TWIN_HOST/PORT)")
    clear = twin_sub.add_parser("clear", help="end every fault of a target on a running twin")
    clear.set_defaults(func=control)
    clear.add_argument("--target", default="pm-site-1")
    clear.add_argument("--url")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mendloop",
        description=__doc__.splitlines()[0],
        epilog="Docs (in the source tree): README.md (settings), docs/SITES.md (sites and packs), "
        "docs/API.md, docs/REMEDIATION.md, docs/RULES.md.",
    )
    parser.add_argument(
        "--config", type=Path, help="YAML settings file (env vars win; README, configuration)"
    )
    parser.add_argument(
        "--site",
        type=Path,
        help="the site directory (docs/SITES.md; default MENDLOOP_SITE, else the twin site)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, ref: str, help_: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=command(ref))
        if json_flag:
            p.add_argument("--json", action="store_true", help="one JSON object on stdout")
        return p

    add("run", "mendloop.service:cmd_run", "the daemon: loop + REST API", json_flag=False)
    demo = add(
        "demo", "mendloop.demo:cmd_demo", "all local: Neo4j, twin, daemon; inject faults one by one"
    )
    demo.add_argument(
        "--faults", help="comma-separated fault names, or `all` (default cache_saturation)"
    )
    add("doctor", "mendloop.doctor:cmd_doctor", "check every component and say how to fix it")
    site = sub.add_parser("site", help="the site: check it (docs/SITES.md)")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    site_check = site_sub.add_parser("check", help="every problem of the site, file:line: why")
    site_check.set_defaults(func=command("mendloop.site_cli:cmd_site_check"))
    site_check.add_argument("--json", action="store_true", help="one JSON object on stdout")
    init = add("init", "mendloop.site_cli:cmd_init", "scaffold an empty site in DIR", False)
    init.add_argument("dir", help="the new site's directory")
    _register_verdicts(sub)
    replay = add(
        "replay",
        "mendloop.replay:cmd_replay",
        "backtest recorded incidents against rules/ML/knowledge",
    )
    replay.add_argument("incident", nargs="*", help="incident ids (default: the newest)")
    replay.add_argument("--rules", type=Path, help="rule directory under test (default: rules/)")
    replay.add_argument(
        "--models", type=Path, help="ML baselines under test (default: var/models, the daemon's)"
    )
    replay.add_argument("--target", help="only incidents of this target")
    replay.add_argument("--limit", type=int, default=50, help="newest N incidents (default 50)")
    neo = add("neo4j", "mendloop.commands:cmd_neo4j", "the local Neo4j for development and tests")
    neo.add_argument("action", choices=("start", "stop", "status"))
    _register_twin(sub)
    register_bench(sub, command)
    register_rules(sub, command)
    register_kb(sub, command)
    register_eval(sub, {"packs": command("mendloop.packeval:cmd_eval_packs")})
    register_rca(sub)
    register_tokens(sub, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(args.config, args.site)
        return int(args.func(args, settings))
    except MendloopError as exc:
        print(f"mendloop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
