"""Cases into the graph in batches: embed each distinct text once, one transaction per batch.

    importer = Importer(graph, embedder, domain, progress=print)
    counts = importer.write(cases)          # {"written", "unchanged", "embedded", ...}

Embedding batch n+1 overlaps with Neo4j committing batch n (one writer thread, batches
committed in order). Re-importing is idempotent and cheap: a case whose content is
unchanged is skipped; a text already embedded anywhere in the graph (same model, same
words) reuses the stored vector, and so does one in the on-disk VectorCache when given
(a corpus re-imported into a new graph is not embedded twice). A batch is all or
nothing; when Neo4j goes away mid-import the batch is retried (the write is idempotent)
until ``retry_s`` has passed, then the import stops with how far it got, and running it
again continues where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from kernel.domain import Domain, parse_symptom, symptom_keys
from kernel.errors import GraphUnavailable, KnowledgeError
from kernel.models import Case
from knowledge.embedding import Embedder, VectorCache, text_key
from knowledge.graph import KnowledgeGraph

T = TypeVar("T")
R = TypeVar("R")
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
    vectors_from_disk: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"embed_s": 0.0})

    def as_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "vectors_reused": self.vectors_reused,
            "vectors_from_disk": self.vectors_from_disk,
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
        disk_cache: VectorCache | None = None,
    ) -> None:
        self.graph = graph
        self.embedder = embedder
        self.domain = domain
        self.batch_size = batch_size
        self.retry_s = retry_s
        self.progress = progress or (lambda _: None)
        self.disk_cache = disk_cache

    def write(self, cases: Iterable[Case], total: int | None = None) -> WriteCounts:
        """Embed batch n+1 while Neo4j commits batch n (one writer thread, in order)."""
        counts = WriteCounts()
        started = time.perf_counter()
        recent: dict[str, list[float]] = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-writer") as writer:
            pending: tuple[Future[None], Prepared] | None = None
            for batch in batched(cases, self.batch_size):
                prepared = self._retrying(functools.partial(self._prepare, batch, recent), counts)
                recent = prepared.vectors
                if pending is not None:
                    self._finish(*pending, counts, started, total)
                pending = (
                    writer.submit(self._retrying, lambda p=prepared: self._commit(p), counts),
                    prepared,
                )
            if pending is not None:
                self._finish(*pending, counts, started, total)
        self._retrying(self.graph.await_indexes, counts)
        counts.seconds = time.perf_counter() - started
        return counts

    def _finish(
        self,
        future: Future[None],
        prepared: Prepared,
        counts: WriteCounts,
        started: float,
        total: int | None,
    ) -> None:
        """The counters move only once the batch's transaction has committed."""
        future.result()
        counts.written += len(prepared.rows)
        counts.unchanged += prepared.unchanged
        counts.embedded += prepared.embedded
        counts.vectors_reused += prepared.reused
        counts.vectors_from_disk += prepared.from_disk
        counts.batches += 1
        counts.timings["embed_s"] += prepared.embed_s
        done = counts.written + counts.unchanged
        rate = done / max(time.perf_counter() - started, 1e-9)
        of = f"/{total}" if total else ""
        self.progress(
            f"cases {done}{of} ({rate:.0f}/s): {counts.written} written, "
            f"{counts.unchanged} unchanged, {counts.embedded} texts embedded"
        )

    def _retrying(self, step: Callable[[], R], counts: WriteCounts) -> R:
        deadline = time.monotonic() + self.retry_s
        delay = 0.5
        while True:
            try:
                return step()
            except GraphUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise KnowledgeError(
                        f"Neo4j unavailable for {self.retry_s:.0f} s after "
                        f"{counts.written + counts.unchanged} cases were stored; nothing of "
                        f"the failed batch was written; run the same import again to "
                        f"continue ({exc})"
                    ) from exc
                counts.retries += 1
                self.progress(f"Neo4j unavailable, retrying the batch in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def _prepare(self, batch: list[Case], recent: dict[str, list[float]]) -> Prepared:
        """What to write and with which vectors: unchanged cases are left out, a text
        already embedded (in the graph, or in the batch still being committed) reused."""
        stored = self.graph.stored_keys([c.id for c in batch])
        changed = [c for c in batch if stored.get(c.id, (None, None))[1] != content_key(c)]
        needs_vector = {
            text_key(c.text): c.text
            for c in changed
            if stored.get(c.id, (None, None))[0] != text_key(c.text)
        }
        vectors = {k: recent[k] for k in needs_vector if k in recent}
        lookup = [k for k in needs_vector if k not in vectors]
        vectors |= self.graph.vectors_for(lookup) if lookup else {}
        missing = [k for k in needs_vector if k not in vectors]
        from_disk = 0
        if missing and self.disk_cache is not None:
            on_disk = self.disk_cache.get_many(missing)
            from_disk = len(on_disk)
            vectors |= on_disk
            missing = [k for k in needs_vector if k not in vectors]
        reused = len(vectors)
        t0 = time.perf_counter()
        if missing:
            fresh = dict(
                zip(
                    missing,
                    self.embedder.embed_many([needs_vector[k] for k in missing], cache=False),
                    strict=True,
                )
            )
            if self.disk_cache is not None:
                self.disk_cache.put_many(fresh)
            vectors |= fresh
        rows = [case_row(c, self.domain, vectors.get(text_key(c.text))) for c in changed]
        return Prepared(
            rows=rows,
            vectors=vectors,
            unchanged=len(batch) - len(changed),
            embedded=len(missing),
            reused=reused,
            from_disk=from_disk,
            embed_s=time.perf_counter() - t0,
        )

    def _commit(self, prepared: Prepared) -> None:
        if prepared.rows:
            self.graph.write_cases(prepared.rows)


@dataclass
class Prepared:
    rows: list[dict[str, Any]]
    vectors: dict[str, list[float]]
    unchanged: int
    embedded: int
    reused: int
    from_disk: int
    embed_s: float
