"""Cases into the graph in batches: embed each distinct text once, one transaction per batch.

    importer = Importer(graph, embedder, domain, progress=print)
    counts = importer.write(cases)          # {"written", "unchanged", "embedded", ...}

Re-importing is idempotent and cheap: a case whose content is unchanged is skipped, a
text already embedded anywhere in the graph (same model, same words) reuses the stored
vector. A batch is all or nothing; when Neo4j goes away mid-import the batch is retried
(the write is idempotent) until ``retry_s`` has passed, then the import stops with how far
it got, and running it again continues where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from knowledge.domain import Domain, parse_symptom, symptom_keys
from knowledge.embedding import Embedder, text_key
from knowledge.graph import KnowledgeGraph
from loop.errors import GraphUnavailable, KnowledgeError
from loop.models import Case

T = TypeVar("T")
Progress = Callable[[str], None]


def content_key(case: Case) -> str:
    """Hash of everything the graph stores about a case (unchanged -> nothing to write)."""
    return hashlib.sha256(case.model_dump_json().encode()).hexdigest()[:32]


def case_row(case: Case, domain: Domain, embedding: list[float] | None) -> dict[str, Any]:
    """The parameters of one case for KnowledgeGraph.write_cases. Pure."""
    symptoms = [parse_symptom(tag) for tag in case.symptoms]
    region = domain.region_of(case)
    environment = sorted(case.environment.items())
    props = {
        "title": case.title,
        "text": case.text,
        "symptoms": [s.tag for s in symptoms],
        "symptom_keys": symptom_keys(case.symptoms),
        "device_type": case.device_type,
        "component": domain.device_types.get(case.device_type) or domain.faults.get(case.fault, ""),
        "environment": [f"{k}={v}" for k, v in environment],
        "target": case.target,
        "region": list(case.region),
        "fault": case.fault,
        "outcome": case.outcome,
        "time_to_resolve_s": case.time_to_resolve_s,
    }
    return {
        "id": case.id,
        "solution_id": case.solution_id,
        "props": props,
        "text_key": text_key(case.text),
        "content_key": content_key(case),
        "embedding": embedding,
        "symptoms": [
            {"tag": s.tag, "series": s.series, "direction": s.direction, "band": s.band}
            for s in symptoms
        ],
        "environment": [{"key": f"{k}={v}", "parameter": k, "value": v} for k, v in environment],
        "region_path": "/".join(region) if region and not case.target else None,
    }


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@dataclass
class WriteCounts:
    written: int = 0
    unchanged: int = 0
    embedded: int = 0
    vectors_reused: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"embed_s": 0.0, "write_s": 0.0})

    def as_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "vectors_reused": self.vectors_reused,
            "batches": self.batches,
            "retries": self.retries,
            "seconds": round(self.seconds, 2),
            **{k: round(v, 2) for k, v in self.timings.items()},
        }


class Importer:
    def __init__(
        self,
        graph: KnowledgeGraph,
        embedder: Embedder,
        domain: Domain,
        batch_size: int = 1000,
        retry_s: float = 90.0,
        progress: Progress | None = None,
    ) -> None:
        self.graph = graph
        self.embedder = embedder
        self.domain = domain
        self.batch_size = batch_size
        self.retry_s = retry_s
        self.progress = progress or (lambda _: None)

    def write(self, cases: Iterable[Case], total: int | None = None) -> WriteCounts:
        counts = WriteCounts()
        started = time.perf_counter()
        done = 0
        for batch in batched(cases, self.batch_size):
            self._retrying(lambda b=batch: self._write_batch(b, counts), counts, done)
            done += len(batch)
            counts.batches += 1
            rate = done / max(time.perf_counter() - started, 1e-9)
            of = f"/{total}" if total else ""
            self.progress(
                f"cases {done}{of} ({rate:.0f}/s): {counts.written} written, "
                f"{counts.unchanged} unchanged, {counts.embedded} texts embedded"
            )
        self._retrying(self.graph.await_indexes, counts, done)
        counts.seconds = time.perf_counter() - started
        return counts

    def _retrying(self, step: Callable[[], object], counts: WriteCounts, done: int) -> None:
        deadline = time.monotonic() + self.retry_s
        delay = 0.5
        while True:
            try:
                step()
                return
            except GraphUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise KnowledgeError(
                        f"Neo4j unavailable for {self.retry_s:.0f} s after {done} cases were "
                        f"stored; nothing of the failed batch was written; run the same "
                        f"import again to continue ({exc})"
                    ) from exc
                counts.retries += 1
                self.progress(f"Neo4j unavailable, retrying the batch in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def _write_batch(self, batch: list[Case], counts: WriteCounts) -> None:
        """All or nothing: the counters move only once the transaction has committed."""
        t0 = time.perf_counter()
        stored = self.graph.stored_keys([c.id for c in batch])
        changed = [c for c in batch if stored.get(c.id, (None, None))[1] != content_key(c)]
        if not changed:
            counts.unchanged += len(batch)
            return
        needs_vector = {
            text_key(c.text): c.text
            for c in changed
            if stored.get(c.id, (None, None))[0] != text_key(c.text)
        }
        vectors = self.graph.vectors_for(list(needs_vector)) if needs_vector else {}
        reused = len(vectors)
        missing = [k for k in needs_vector if k not in vectors]
        t1 = time.perf_counter()
        if missing:
            fresh = self.embedder.embed_many([needs_vector[k] for k in missing], cache=False)
            vectors.update(zip(missing, fresh, strict=True))
        t2 = time.perf_counter()
        rows = [case_row(c, self.domain, vectors.get(text_key(c.text))) for c in changed]
        self.graph.write_cases(rows)
        counts.written += len(changed)
        counts.unchanged += len(batch) - len(changed)
        counts.embedded += len(missing)
        counts.vectors_reused += reused
        counts.timings["embed_s"] += t2 - t1
        counts.timings["write_s"] += (t1 - t0) + (time.perf_counter() - t2)
