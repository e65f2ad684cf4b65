"""`mendloop kb ...`: import, search, inspect, export, generate and calibrate the knowledge."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernel.config import Settings
from kernel.domain import symptom_keys
from kernel.errors import MendloopError
from kernel.models import Case
from knowledge.calibration import calibrate
from knowledge.embedding import Embedder, VectorCache
from knowledge.graph import KnowledgeGraph
from knowledge.importer import Importer
from knowledge.matcher import Matcher
from knowledge.seed import seed_graph
from knowledge.similarity import MatchQuery
from knowledge.tickets import BadRow, read_tickets, ticket_of
from mendloop.generator import Generator
from sites import load_site


def _emit(args: argparse.Namespace, result: object) -> None:
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(json.dumps(result, indent=2, default=str))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _vocabulary(settings: Settings) -> tuple[Any, Any, dict[str, Any]]:
    """The site's domain, catalog and solutions: what an imported case may name."""
    site = load_site(settings.site_dir)
    return site.domain, site.catalog, site.solutions()


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Streams the file: rows are validated and written batch by batch, so a file of
    millions of tickets needs the memory of one batch, not of the file."""

    domain, catalog, solutions = _vocabulary(settings)
    bad: list[BadRow] = []
    rows = 0

    def good_cases() -> Iterator[Case]:
        nonlocal rows
        for row in read_tickets(Path(args.file), domain, catalog, solutions):
            rows += 1
            if isinstance(row, BadRow):
                if len(bad) < args.show_bad:
                    _progress(f"{args.file}: {row}")
                bad.append(row)
            else:
                yield row.case

    result: dict[str, Any] = {"file": args.file}
    if args.check:
        good = sum(1 for _ in good_cases())
    else:
        graph = KnowledgeGraph.connect(settings)
        try:
            graph.ensure_schema(domain)
            for solution in solutions.values():
                graph.upsert_solution(solution)
            importer = Importer(
                graph,
                Embedder.shared(),
                domain,
                batch_size=args.batch,
                progress=_progress,
                disk_cache=VectorCache(settings.var_dir / "embeddings.sqlite"),
            )
            counts = importer.write(good_cases())
        finally:
            graph.close()
        good = counts.written + counts.unchanged
        result["import"] = counts.as_dict()
    if len(bad) > args.show_bad:
        _progress(f"... and {len(bad) - args.show_bad} more bad rows")
    result |= {
        "rows": rows,
        "good": good,
        "bad": len(bad),
        "bad_rows": [{"line": r.line, "id": r.id, "reason": r.reason} for r in bad[:1000]],
    }
    _emit(args, result)
    return 0 if not bad or args.allow_bad else 1


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    if not args.text.strip():
        raise MendloopError("kb search needs a non-empty TEXT")
    domain = load_site(settings.site_dir).domain
    if args.fault and args.fault not in domain.faults:
        raise MendloopError(f"unknown fault {args.fault!r}; known: {', '.join(domain.faults)}")
    query = MatchQuery(
        text=args.text,
        fault=args.fault,
        symptom_keys=tuple(symptom_keys([s for s in args.symptoms.split(",") if s])),
        device_type=args.device or "",
        component=domain.device_types.get(args.device or "", ""),
    )
    graph = KnowledgeGraph.connect(settings)
    try:
        scored, timing = Matcher(graph, Embedder.shared()).match(query)
    finally:
        graph.close()
    _emit(
        args,
        {
            "matches": [
                {
                    "case": s.candidate.case.id,
                    "title": s.candidate.case.title,
                    "fault": s.candidate.case.fault,
                    "outcome": s.candidate.case.outcome,
                    "solution": s.candidate.solution.id,
                    "similarity": round(s.similarity, 4),
                    "same_problem": s.similarity >= settings.match_min_similarity,
                    "features": s.features.as_dict(),
                }
                for s in scored[: args.k]
            ],
            "timing_ms": {k: round(v, 2) for k, v in timing.__dict__.items()},
        },
    )
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    graph = KnowledgeGraph.connect(settings)
    try:
        _emit(args, graph.stats())
    finally:
        graph.close()
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    graph = KnowledgeGraph.connect(settings)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    count = 0
    try:
        for case in graph.export_cases():
            out.write(json.dumps(ticket_of(case), ensure_ascii=False) + "\n")
            count += 1
    finally:
        graph.close()
        if args.out:
            out.close()
    _progress(f"exported {count} cases" + (f" to {args.out}" if args.out else ""))
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    site = load_site(settings.site_dir)
    graph = KnowledgeGraph.connect(settings)
    try:
        solutions = list(site.solutions().values())
        result = seed_graph(graph, Embedder.shared(), solutions, list(site.cases), site.domain)
    finally:
        graph.close()
    _emit(args, result)
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    domain, catalog, solutions = _vocabulary(settings)
    generator = Generator(domain, catalog, list(solutions.values()), args.stories)
    with open(args.out, "w", encoding="utf-8") as out:
        for case in generator.cases(args.cases, seed=args.seed):
            out.write(json.dumps(ticket_of(case)) + "\n")
    _progress(f"wrote {args.cases} cases to {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    calibration, report = calibrate(Embedder.shared())
    if args.write:
        calibration.save()
        _progress("wrote knowledge/calibration.json")
    _emit(args, {"bias": calibration.bias, "weights": calibration.weights, **report})
    return 0
