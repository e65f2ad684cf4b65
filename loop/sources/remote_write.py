"""Prometheus remote-write 1.0 bodies -> columns of samples, for the high-volume push path.

A body is a snappy block holding a ``prometheus.WriteRequest`` (what Prometheus, Grafana
Agent/Alloy and OpenTelemetry collectors send). Decoding never makes a Python object per
sample: the samples come back as numpy columns, the label sets once per distinct set.

    decoder = RemoteWriteDecoder(max_bytes=64 << 20)
    try:
        batch = decoder.decode(body)
    except RemoteWriteError as exc:          # exc.reason: bad_snappy, bad_protobuf, ...
        refused[exc.reason] += 1             # one request refused whole, with a 400
    else:
        for i, labels in enumerate(batch.label_sets):   # Mapping[str, str], read-only
            mask = batch.series == i                     # int32 column, one per sample
            ... batch.timestamps_ms[mask], batch.values[mask]
        batch.counts.out_of_order, batch.counts.stale_markers, ...

Backends: ``native`` is the Rust decoder in native/remote_write (module
``mendloop_remote_write``, built by ``./dev setup`` when cargo is there); ``python`` is its
twin in remote_write_fallback.py, a hundred times slower or more, with identical results
(the tests run both). ``available_backend()`` says which one a new decoder uses, for benches and
readiness checks.

A label set's identity is its canonical blob (``name\\0value\\0`` pairs sorted by name,
empty values dropped; ``batch.keys``). The decoder keeps a bounded cache of label sets
across requests (CLOCK in Rust, LRU in Python): the native one also remembers the raw label
bytes each set was validated from, so a series sent again costs one hash, and each set is
parsed to a read-only mapping once while it stays cached.
"""

from __future__ import annotations

import enum
import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from loop.sources import remote_write_fallback as _fallback


def _load_native() -> ModuleType | None:
    """The Rust decoder, built from native/remote_write by ./dev setup when cargo exists."""
    try:
        return importlib.import_module("mendloop_remote_write")
    except ImportError:  # no Rust toolchain on this machine: the Python twin is used
        return None


_native = _load_native()

DEFAULT_MAX_BYTES = 64 << 20
"""Largest decompressed body accepted; refused before anything that size is allocated."""
DEFAULT_MAX_SAMPLES = 2_000_000
"""Most samples in one request (Prometheus sends 2,000 at most by default)."""
DEFAULT_CACHE_SIZE = 100_000
"""Label sets kept parsed across requests (about 1.5 kB each when full, native + Python);
also the most distinct label sets one request may hold."""
STALE_NAN_BITS = 0x7FF0000000000002
"""Prometheus' staleness marker: a NaN with this exact bit pattern."""


class Backend(enum.StrEnum):
    NATIVE = "native"
    PYTHON = "python"


class RefusalReason(enum.StrEnum):
    """Why a whole request was refused; each is a counter label and a 400 for the sender."""

    BAD_SNAPPY = "bad_snappy"
    BAD_PROTOBUF = "bad_protobuf"
    TOO_LARGE = "too_large"
    BAD_LABELS = "bad_labels"
    INTERNAL = "internal"  # a decoder bug caught at the boundary; never expected


class RemoteWriteError(ValueError):
    """A refused remote-write body. ``reason`` is a ``RefusalReason``; the message says where
    (byte offset, series number) without echoing the sender's strings."""

    def __init__(self, message: str, reason: RefusalReason) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RemoteWriteCounts:
    """What one request held besides its float samples, and what was odd about them."""

    timeseries: int  # TimeSeries entries (Prometheus repeats a series once per sample)
    samples: int
    label_sets: int  # distinct label sets with samples
    series_without_samples: int  # e.g. native-histogram-only series
    histograms_skipped: int  # native histograms are not supported
    exemplars_skipped: int
    metadata_skipped: int
    out_of_order: int  # older than an earlier sample of the same set in this request
    duplicate_timestamps: int  # same timestamp as an earlier sample of the same set
    stale_markers: int  # STALE_NAN_BITS: the series ended
    nan_values: int  # NaNs that are not stale markers


@dataclass(frozen=True, slots=True)
class RemoteWriteBatch:
    """One decoded request. Sample ``k`` has labels ``label_sets[series[k]]``, timestamp
    ``timestamps_ms[k]`` and value ``values[k]``; the arrays are read-only."""

    keys: tuple[bytes, ...]  # canonical blob per label set: its identity
    label_sets: tuple[Mapping[str, str], ...]
    series: NDArray[np.int32]
    timestamps_ms: NDArray[np.int64]
    values: NDArray[np.float64]
    counts: RemoteWriteCounts
    # the decoder's cache slot of each label set (stable while it stays cached), and the
    # slots this request filled with a new label set: what a receiver caches work by
    cache_slots: NDArray[np.int64] | None = None
    refilled: tuple[int, ...] = ()

    def stale(self) -> NDArray[np.bool_]:
        """Per sample: is it Prometheus' staleness marker?"""
        stale: NDArray[np.bool_] = self.values.view(np.uint64) == np.uint64(STALE_NAN_BITS)
        return stale


def available_backend() -> Backend:
    """The backend a decoder uses unless told otherwise: native when it is importable."""
    return Backend.NATIVE if _native is not None else Backend.PYTHON


def parse_label_blob(blob: bytes) -> Mapping[str, str]:
    """A canonical blob -> a read-only mapping (the decoder has checked UTF-8 and NULs).

    >>> dict(parse_label_blob(b"__name__\\0up\\0job\\0node\\0"))
    {'__name__': 'up', 'job': 'node'}
    """
    parts = blob.decode("utf-8").split("\0")  # ends with "", after the last value
    return MappingProxyType(dict(zip(parts[0:-1:2], parts[1::2], strict=True)))


class RemoteWriteDecoder:
    """Decodes bodies with fixed limits and a label-set cache shared by its requests.

    The backend's cache maps label sets to slots; this object keeps each slot's parsed,
    read-only mapping and is told which slots a request filled, so a label set is parsed
    once while it stays cached. A request with more distinct label sets than ``cache_size``
    is refused (too_large). Calls are serialised by a lock (the native backend releases the
    GIL meanwhile): use one decoder per worker thread to decode in parallel.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        cache_size: int = DEFAULT_CACHE_SIZE,
        backend: Backend | None = None,
    ) -> None:
        if max_bytes <= 0 or max_samples <= 0 or cache_size <= 0:
            raise ValueError("max_bytes, max_samples and cache_size must be positive")
        self.backend = backend or available_backend()
        self.max_bytes, self.max_samples, self.cache_size = max_bytes, max_samples, cache_size
        if self.backend is Backend.NATIVE:
            if _native is None:
                raise RuntimeError(
                    "the native remote-write decoder is not built: run ./dev setup (needs cargo)"
                )
            self._impl: Any = _native.Decoder(max_bytes, max_samples, cache_size)
            self._errors: type[Exception] = _native.DecodeError
        else:
            self._impl = _fallback.Decoder(max_bytes, max_samples, cache_size)
            self._errors = _fallback.DecodeError
        self._parsed: NDArray[np.object_] = np.empty(cache_size, dtype=object)
        self._keys: NDArray[np.object_] = np.empty(cache_size, dtype=object)
        self._lock = threading.Lock()

    def decode(self, body: bytes) -> RemoteWriteBatch:
        """Decode one request body; raise ``RemoteWriteError`` if it is refused."""
        with self._lock:
            try:
                series, timestamps, values, slots, new_slots, new_blobs, raw = self._impl.decode(
                    bytes(body)
                )
            except self._errors as exc:
                reason, message = exc.args
                raise RemoteWriteError(message, RefusalReason(reason)) from exc
            for slot, blob in zip(new_slots, new_blobs, strict=True):
                self._parsed[slot] = parse_label_blob(blob)
                self._keys[slot] = blob
            label_sets = tuple(self._parsed[slots].tolist())
            keys = tuple(self._keys[slots].tolist())
        for column in (series, timestamps, values):
            column.flags.writeable = False
        stale = int(np.count_nonzero(values.view(np.uint64) == np.uint64(STALE_NAN_BITS)))
        nan = int(np.count_nonzero(np.isnan(values))) - stale
        timeseries, without, histograms, exemplars, metadata, ooo, duplicates = raw
        counts = RemoteWriteCounts(
            timeseries=timeseries,
            samples=len(values),
            label_sets=len(keys),
            series_without_samples=without,
            histograms_skipped=histograms,
            exemplars_skipped=exemplars,
            metadata_skipped=metadata,
            out_of_order=ooo,
            duplicate_timestamps=duplicates,
            stale_markers=stale,
            nan_values=nan,
        )
        cache_slots = np.asarray(slots, dtype=np.int64)
        cache_slots.flags.writeable = False
        return RemoteWriteBatch(
            keys,
            label_sets,
            series,
            timestamps,
            values,
            counts,
            cache_slots,
            tuple(int(slot) for slot in new_slots),
        )


def decode(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> RemoteWriteBatch:
    """One-off decode with a fresh decoder (nothing cached across calls): for tools and
    tests; a receiver keeps one ``RemoteWriteDecoder`` per worker."""
    return RemoteWriteDecoder(max_bytes=max_bytes).decode(body)
