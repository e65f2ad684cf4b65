"""Metric sources: small adapters that turn foreign metric formats into ``Sample``s.

    promtext     Prometheus text exposition format 0.0.4 (a push body or a scrape)
    prometheus   pull from a real Prometheus over its HTTP API; ``PrometheusPoller``
    otlp         OTLP/HTTP metrics, JSON encoding

The parsers are pure (text or JSON in, ``ParseResult`` out) so they are tested without
I/O; the engine's ``submit(batch)`` is what finally takes the samples. Nothing is dropped
silently: whatever cannot become a sample is an ``Issue`` saying where (line or metric)
and why, and the API hands those back to the sender.

    >>> result = parse_text('cache_hit_ratio{target="a"} 0.93 1700000000000\\n')
    >>> result.samples[0].series, result.samples[0].target, result.samples[0].ts
    ('cache_hit_ratio', 'a', 1700000000.0)
"""

from __future__ import annotations

from loop.sources.base import (
    DEFAULT_TARGET_LABELS,
    Issue,
    NameMap,
    Origin,
    ParseResult,
    SampleMapper,
    identity,
    rename,
    resolve_target,
)
from loop.sources.promtext import parse_text

__all__ = [
    "DEFAULT_TARGET_LABELS",
    "Issue",
    "NameMap",
    "Origin",
    "ParseResult",
    "SampleMapper",
    "identity",
    "parse_text",
    "rename",
    "resolve_target",
]
