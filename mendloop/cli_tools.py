"""The parsers of the tool commands (argparse only): `bench`, `rules`, `kb`, `token`.

Each command is named ``module:function`` through ``command`` (mendloop/cli.py), so its
module loads only when it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from api.roles import Role

Sub = argparse._SubParsersAction  # what add_subparsers returns
CommandOf = Callable[[str], Any]


def register_bench(sub: Sub, command: CommandOf) -> None:
    bench = sub.add_parser("bench", help="benchmarks (figures for docs/BENCHMARKS.md)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    ingest = bench_sub.add_parser("ingest", help="monitor ingest: samples/s and memory")
    ingest.set_defaults(func=command("mendloop.bench:cmd_bench_ingest"))
    ingest.add_argument("--targets", type=int, default=10)
    ingest.add_argument("--ticks", type=int, default=3600, help="simulated 1 s ticks")
    ingest.add_argument("--json", action="store_true")
    ingest.add_argument(
        "--remote-write",
        choices=("with", "only", "skip"),
        default="with",
        help="remote-write figures (decode, receiver, HTTP) with the others, alone, or none",
    )
    ingest.add_argument("--rw-requests", type=int, default=20, help="timed bulk requests")
    ingest.add_argument(
        "--rw-prometheus-requests", type=int, default=200, help="timed 2,000-sample requests"
    )
    ingest.add_argument(
        "--rw-shards", type=int, default=4, help="remote-write requests in flight over HTTP"
    )

    # `mendloop bench rca`: analysis compute per tick for 286 metrics x N targets
    rca = bench_sub.add_parser("rca", help="analysis compute latency (p50/p95 per tick)")
    rca.set_defaults(func=command("mendloop.bench:cmd_bench_rca"))
    rca.add_argument("--targets", type=int, default=10)
    rca.add_argument("--ticks", type=int, default=600, help="simulated 1 s ticks")
    rca.add_argument("--json", action="store_true")
    rca.add_argument(
        "--rule-free-only", action="store_true", help="only the rule-free component ranking"
    )
    rca.add_argument("--components", type=int, default=50, help="rule-free: site components")
    rca.add_argument(
        "--rule-free-targets", type=int, default=1000, help="rule-free: targets analysed in turn"
    )
    rca.add_argument(
        "--trigger-targets",
        type=int,
        default=0,
        help="also time the unexplained-anomaly check over this many twin targets (0: skip)",
    )

    # `mendloop bench flood`: the daemon under a flood of new names, with a real fault
    flood = bench_sub.add_parser("flood", help="a flood of new targets/series + a real fault")
    flood.set_defaults(func=command("mendloop.flood:cmd_bench_flood"))
    flood.add_argument("--fault", default="cache_saturation", help="the twin fault injected")
    flood.add_argument("--workers", type=int, default=4, help="concurrent flood requests")
    flood.add_argument("--targets-per-request", type=int, default=20)
    flood.add_argument("--lead-s", type=float, default=20.0, help="flood before the fault")
    flood.add_argument("--max-s", type=float, default=400.0, help="the flood's upper bound")
    flood.add_argument("--warmup-s", type=float, default=5.0)
    flood.add_argument(
        "--no-repeat", action="store_true", help="only new names (no sustained bogus faults)"
    )
    flood.add_argument("--json", action="store_true")

    # `mendloop bench scale`: K real workers on one PostgreSQL (docs/SCALING.md)
    scale = bench_sub.add_parser("scale", help="K workers on one PostgreSQL: targets, takeover")
    scale.set_defaults(func=command("mendloop.bench_scale:cmd_bench_scale"))
    scale.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    scale.add_argument("--targets", default="10,20,40,80", help="target counts tried in turn")
    scale.add_argument("--warmup-s", type=float, default=20.0)
    scale.add_argument("--faults", type=int, default=4, help="faults injected per step")
    scale.add_argument("--ttl-s", type=float, default=15.0, help="the workers' lease TTL")
    scale.add_argument(
        "--push",
        choices=("remote-write", "json"),
        default="remote-write",
        help="how the pusher sends (remote-write: /api/v1/write; json: /v1/samples)",
    )
    scale.add_argument("--shards", type=int, default=4, help="push requests in flight at once")
    scale.add_argument("--database-url", default="", help="default MENDLOOP_DATABASE_URL")
    scale.add_argument("--json", action="store_true")

    match = bench_sub.add_parser(
        "match", help="knowledge graph: 100k import, match latency, accuracy, reuse"
    )
    match.set_defaults(func=command("mendloop.bench_knowledge:cmd_bench_match"))
    match.add_argument("--cases", type=int, default=100_000)
    match.add_argument("--queries", type=int, default=500)
    match.add_argument("--reuse-incidents", type=int, default=300)
    match.add_argument("--stories", type=int, default=400, help="distinct texts per pool")
    match.add_argument("--seed", type=int, default=7)
    match.add_argument(
        "--keep", action="store_true", help="reuse the bench graph of a previous run"
    )
    match.add_argument("--keep-running", action="store_true", help="leave the bench Neo4j running")
    match.add_argument(
        "--cold",
        action="store_true",
        help="empty the on-disk embedding cache first (every text embedded by the model)",
    )
    match.add_argument("--json", action="store_true")


def register_rules(sub: Sub, command: CommandOf) -> None:
    """`mendloop rules check|test` (mendloop/rules_cli.py)."""
    rules = sub.add_parser("rules", help="rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rule files (errors with file:line)")
    check.set_defaults(func=command("mendloop.rules_cli:cmd_rules_check"))
    check.add_argument("path", nargs="*", help="rule files or directories (default: rules/)")
    check.add_argument("--json", action="store_true")

    test = rules_sub.add_parser(
        "test", help="replay a recorded window or a twin scenario through rule files"
    )
    test.set_defaults(func=command("mendloop.rules_cli:cmd_rules_test"))
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


def register_kb(sub: Sub, command: CommandOf) -> None:
    """`mendloop kb ...` (mendloop/knowledge_cli.py)."""
    kb = sub.add_parser("kb", help="the knowledge graph: cases, solutions, similarity")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)

    def add(name: str, func: str, help_: str) -> argparse.ArgumentParser:
        p = kb_sub.add_parser(name, help=help_)
        p.set_defaults(func=command(f"mendloop.knowledge_cli:{func}"))
        p.add_argument("--json", action="store_true", help="one JSON object on stdout")
        return p

    imp = add("import", "cmd_import", "import historical tickets (JSONL or CSV)")
    imp.add_argument("file")
    imp.add_argument("--check", action="store_true", help="validate only, write nothing")
    imp.add_argument("--batch", type=int, default=1000, help="cases per transaction")
    imp.add_argument("--show-bad", type=int, default=20, help="bad rows printed on stderr")
    imp.add_argument("--allow-bad", action="store_true", help="exit 0 even when some rows were bad")
    search = add("search", "cmd_search", "the most similar past cases to a description")
    search.add_argument("text")
    search.add_argument("--fault", help="the fault, when known (as the RCA names it)")
    search.add_argument("--symptoms", default="", help="series:direction,... observed")
    search.add_argument("--device", help="device type")
    search.add_argument("-k", type=int, default=5)
    add("stats", "cmd_stats", "what the graph holds, solutions' track record")
    export = add("export", "cmd_export", "every case as JSONL (importable again)")
    export.add_argument("--out", help="file (default stdout)")
    add("seed", "cmd_seed", "load the built-in cases and the solution library")
    gen = add("generate", "cmd_generate", "synthetic cases for scale tests (JSONL)")
    gen.add_argument("--cases", type=int, default=100_000)
    gen.add_argument("--out", required=True)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--stories", type=int, default=400, help="distinct texts per pool")
    cal = add("calibrate", "cmd_calibrate", "fit the similarity on the labelled set")
    cal.add_argument("--write", action="store_true", help="save knowledge/calibration.json")


def register_tokens(sub: Sub, command: CommandOf) -> None:
    """`mendloop token create|list|revoke` (mendloop/tokens_cli.py)."""
    token = sub.add_parser("token", help="API tokens (hashed at rest) and their roles")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="a new token; printed once")
    create.add_argument("name", help="who it is for (e.g. alice, grafana, chatops)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--by", default="cli", help="who creates it (kept on the token)")
    listing = token_sub.add_parser("list", help="tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="revoked ones too")
    revoke = token_sub.add_parser("revoke", help="revoke by id, or every live token of a name")
    revoke.add_argument("token", help="token id or name")
    for p in (create, listing, revoke):
        p.set_defaults(func=command("mendloop.tokens_cli:cmd_token"))
        p.add_argument("--json", action="store_true", help="one JSON object on stdout")
