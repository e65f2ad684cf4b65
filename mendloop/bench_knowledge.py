"""`mendloop bench match`: the knowledge graph at 100k+ cases (docs/BENCHMARKS.md).

Runs on a Neo4j of its own (``bolt://127.0.0.1:7690``, data in var/bench-neo4j; or
MENDLOOP_BENCH_NEO4J_URI), never on the development graph, in three parts:

1. reuse on a recurring-fault workload, from a graph that knows only the solutions: each
   incident is matched; when a resolved case of the same fault scores >= 0.8 its fix is
   reused, otherwise a person fixes it; either way the outcome is learnt (the loop's own
   learn path), so later recurrences can reuse it. Reuse rate = incidents fixed by a
   reused solution that fixes their fault / all incidents;
2. bulk import of generated cases (mendloop.generator) through the import path, timed,
   embeddings included (each distinct text embedded once; with ``--cold`` the on-disk
   embedding cache is emptied first, otherwise a previous run's vectors are reused);
3. labelled queries (RCA-style, with the true fault): latency of the whole match path
   (embedding, vector search with structured fields, scoring) and of the graph query
   alone, p50/p95; top-1 accuracy = the decision's solution fixes the query's fault;
   memory of Neo4j (RSS of its process) and of this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kernel.models import Case, Decision, DecisionMode
from knowledge.embedding import Embedder, VectorCache
from knowledge.graph import KnowledgeGraph
from knowledge.importer import Importer
from knowledge.matcher import Matcher
from loop.decide import rank_candidates
from loop.learn import record_outcome
from mendloop import local_neo4j
from mendloop.generator import Generator
from sites import load_site

BENCH_URI = "bolt://127.0.0.1:7690"


def _progress(message: str) -> None:
    print(f"[bench match] {message}", file=sys.stderr, flush=True)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def _rss_mb(pid: int | str = "self") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _bench_settings(settings: Any, fresh: bool) -> Any:
    uri = os.environ.get("MENDLOOP_BENCH_NEO4J_URI", BENCH_URI)
    bench = settings.model_copy(
        update={
            "neo4j_uri": uri,
            "var_dir": settings.var_dir / "bench-neo4j",
            "neo4j_heap": os.environ.get("MENDLOOP_NEO4J_HEAP", "1g"),
            "neo4j_pagecache": os.environ.get("MENDLOOP_NEO4J_PAGECACHE", "512m"),
        }
    )
    if bench.uses_local_neo4j:
        if fresh:
            local_neo4j.stop(bench)
            shutil.rmtree(bench.var_dir / "neo4j" / "data", ignore_errors=True)
        local_neo4j.ensure_built(_progress)
        local_neo4j.start(bench)
    return bench


def reuse_workload(graph: Any, embedder: Any, generator: Any, incidents: int, seed: int) -> dict:
    """Recurring faults from a cold start; the loop's decide ranking and learn path."""
    rng = random.Random(seed)
    faults = generator.faults
    weights = [1 / (rank + 1) for rank in range(len(faults))]  # some faults recur more
    matcher = Matcher(graph, embedder)
    reused = wrong = 0
    seen: set[str] = set()
    for number in range(incidents):
        labelled = generator.query(rng, named_fault=True, fault=rng.choices(faults, weights)[0])
        scored, _ = matcher.match(labelled.query)
        eligible, _ = rank_candidates(scored, 0.8)
        fixes = {s.id for s in generator.fixes[labelled.fault]}
        seen.add(labelled.fault)
        if eligible:
            chosen = eligible[0]
            solution, match = chosen.solution, chosen.match
            worked = solution.id in fixes
            reused += worked
            wrong += not worked
        else:  # a person fixes it with the fault's primary solution
            solution, match, worked = generator.fixes[labelled.fault][0], None, True
        case = Case(
            id=f"bench-incident-{seed}-{number}",
            title=f"{labelled.fault} (bench incident {number})",
            text=labelled.query.text,
            symptoms=labelled.query.symptom_keys,
            fault=labelled.fault,
            solution_id=solution.id,
            outcome="resolved" if worked else "failed",
            time_to_resolve_s=60.0 if worked else None,
        )
        decision = Decision(
            incident_id=case.id,
            solution_id=solution.id,
            mode=DecisionMode.auto,
            reason="bench",
            match=match,
        )
        record_outcome(graph, embedder, case, decision)
    return {
        "incidents": incidents,
        "faults_seen": len(seen),
        "reused": reused,
        "wrong_reuse": wrong,
        "reuse_rate": round(reused / incidents, 4) if incidents else None,
        "reuse_rate_ceiling": round((incidents - len(faults)) / incidents, 4)
        if incidents
        else None,
    }


def query_workload(graph: Any, embedder: Any, generator: Any, queries: int, seed: int) -> dict:
    matcher = Matcher(graph, embedder, cache=False)
    rng = random.Random(seed)
    total_ms: list[float] = []
    graph_ms: list[float] = []
    embed_ms: list[float] = []
    correct = decided = text_only_correct = 0
    for _ in range(queries):
        labelled = generator.query(rng, named_fault=True)
        fixes = {s.id for s in generator.fixes[labelled.fault]}
        t0 = time.perf_counter()
        scored, timing = matcher.match(labelled.query)
        eligible, _ = rank_candidates(scored, 0.8)
        total_ms.append((time.perf_counter() - t0) * 1000)
        graph_ms.append(timing.query_ms)
        embed_ms.append(timing.embed_ms)
        if eligible:
            decided += 1
            correct += eligible[0].solution.id in fixes
        # the same words without the fault: an operator's free-text search
        bare = dataclasses.replace(labelled.query, fault=None)
        top, _ = matcher.match(bare)
        text_only_correct += bool(top) and top[0].candidate.solution.id in fixes
    return {
        "queries": queries,
        "p50_ms": _percentile(total_ms, 50),
        "p95_ms": _percentile(total_ms, 95),
        "graph_p50_ms": _percentile(graph_ms, 50),
        "graph_p95_ms": _percentile(graph_ms, 95),
        "embed_p50_ms": _percentile(embed_ms, 50),
        "embed_p95_ms": _percentile(embed_ms, 95),
        "top1_accuracy": round(correct / queries, 4) if queries else None,
        "decided": decided,
        "text_only_top1": round(text_only_correct / queries, 4) if queries else None,
    }


def bench_match(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    bench = _bench_settings(settings, fresh=not args.keep)
    site = load_site(settings.site_dir)  # the twin's by default: stories of its domain
    domain = site.domain
    solutions = list(site.solutions().values())
    generator = Generator(domain, site.catalog, solutions, args.stories)
    embedder = Embedder.shared()
    graph = KnowledgeGraph.connect(bench)
    result: dict[str, Any] = {"neo4j": bench.neo4j_uri}
    try:
        graph.ensure_schema(domain)
        for solution in solutions:
            graph.upsert_solution(solution)
        if args.reuse_incidents:
            _progress(f"reuse workload: {args.reuse_incidents} incidents from a cold start")
            result["reuse"] = reuse_workload(
                graph, embedder, generator, args.reuse_incidents, args.seed
            )
            _progress(f"reuse rate {result['reuse']['reuse_rate']}")
        _progress(f"importing {args.cases} generated cases")
        cache_file = bench.var_dir / "embeddings.sqlite"
        if args.cold:
            cache_file.unlink(missing_ok=True)
        importer = Importer(
            graph,
            embedder,
            domain,
            batch_size=1000,
            progress=_progress,
            disk_cache=VectorCache(cache_file),
        )
        counts = importer.write(generator.cases(args.cases, seed=args.seed), total=args.cases)
        result["import"] = counts.as_dict() | {
            "cases_per_s": round(counts.written / counts.seconds, 1) if counts.seconds else None
        }
        result["cases"] = graph.stats()["cases"]
        _progress(f"{result['cases']} cases in the graph; {args.queries} labelled queries")
        result |= query_workload(graph, embedder, generator, args.queries, args.seed + 1)
        status = local_neo4j.status(bench) if bench.uses_local_neo4j else None
        result["memory_mb"] = {
            "neo4j_rss": _rss_mb(status.pid) if status and status.pid else None,
            "neo4j_heap_max": bench.neo4j_heap,
            "neo4j_pagecache": bench.neo4j_pagecache,
            "engine_rss": _rss_mb(),
            "engine_peak_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        graph.close()
        if bench.uses_local_neo4j and not args.keep_running:
            local_neo4j.stop(bench)
    return result


def cmd_bench_match(args: argparse.Namespace, settings: Any) -> int:
    result = bench_match(settings, args)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0
