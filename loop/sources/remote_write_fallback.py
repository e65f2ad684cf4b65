"""The pure-Python remote-write decoder, used when the native one is not built (no cargo).

It is a line-by-line twin of native/remote_write/src/decoder.rs (its module docstring has
the rules): same refusals in the same order with the same messages, same output, so
loop/sources/remote_write.py and its tests treat both backends alike. It is a hundred times
slower or more (native/remote_write/bench.py): the price of a machine without Rust.

    decoder = Decoder(max_bytes, max_samples, cache_size)
    series, timestamps, values, slots, new_slots, new_blobs, counts = decoder.decode(body)

The snappy block decoder is here too (40 lines, the rules of the `snap` crate the native
decoder uses), so the fallback needs no native package at all.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

Counts = tuple[int, int, int, int, int, int, int]
Decoded = tuple[
    NDArray[np.int32],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.int64],
    list[int],
    list[bytes],
    Counts,
]

_U32_MAX = 0xFFFFFFFF
_I64_WRAP = 1 << 64
_I64_SIGN = 1 << 63


class DecodeError(ValueError):
    """A refused body: ``args == (reason, message)``, like the native module's."""


def _fail(reason: str, message: str) -> DecodeError:
    return DecodeError(reason, message)


def _bad(message: str) -> DecodeError:
    return DecodeError("bad_protobuf", message)


def max_compressed_len(max_bytes: int) -> int:
    """The largest snappy block a ``max_bytes`` payload can take (snappy's own bound)."""
    return 32 + max_bytes + max_bytes // 6


def snappy_length(body: bytes) -> int | None:
    """The announced uncompressed length: a varint of 1-5 bytes, at most 2^32 - 1."""
    value = 0
    for i, byte in enumerate(body[:5]):
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value if value <= _U32_MAX else None
    return None


def _header_size(body: bytes) -> int:
    return next(i + 1 for i, byte in enumerate(body[:5]) if byte < 0x80)


def snappy_decompress(body: bytes, length: int) -> bytes:
    """Decompress a snappy block whose header announced ``length`` bytes."""
    out = bytearray()
    src, s, n = body, _header_size(body), len(body)
    while s < n:
        tag = src[s]
        s += 1
        kind = tag & 3
        if kind == 0:
            size = (tag >> 2) + 1
            if size >= 61:
                extra = size - 60
                if n - s < extra:
                    raise _fail("bad_snappy", "snappy frame does not decompress")
                size = int.from_bytes(src[s : s + extra], "little") + 1
                s += extra
            if n - s < size or length - len(out) < size:
                raise _fail("bad_snappy", "snappy frame does not decompress")
            out += src[s : s + size]
            s += size
            continue
        extra = (1, 2, 4)[kind - 1]
        if n - s < extra:
            raise _fail("bad_snappy", "snappy frame does not decompress")
        if kind == 1:
            size = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | src[s]
        else:
            size = (tag >> 2) + 1
            offset = int.from_bytes(src[s : s + extra], "little")
        s += extra
        d = len(out)
        if offset == 0 or offset > d or d + size > length:
            raise _fail("bad_snappy", "snappy frame does not decompress")
        start = d - offset
        if offset >= size:
            out += out[start : start + size]
        else:
            pattern = bytes(out[start:d])
            out += (pattern * (size // offset + 1))[:size]
    if len(out) != length:
        raise _fail("bad_snappy", "snappy frame does not decompress")
    return bytes(out)


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    start, value, shift = pos, 0, 0
    while True:
        if pos >= end:
            raise _bad(f"truncated varint at byte {start}")
        byte = buf[pos]
        pos += 1
        if shift == 63 and byte > 1:
            raise _bad(f"varint overflow at byte {start}")
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(field number, wire type, next position)."""
    if pos < end and buf[pos] < 0x80:  # the common one-byte tag
        tag, after = buf[pos], pos + 1
    else:
        tag, after = _varint(buf, pos, end)
        if tag > _U32_MAX:
            raise _bad(f"field tag too large at byte {pos}")
    if tag >> 3 == 0:
        raise _bad(f"field number 0 at byte {pos}")
    return tag >> 3, tag & 7, after


def _length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(payload start, payload end) of a length-delimited field whose length is at ``pos``."""
    length, start = _varint(buf, pos, end)
    if length > end - start:
        raise _bad(f"length {length} at byte {pos} runs past the end")
    return start, start + length


def _skip(buf: bytes, pos: int, end: int, wire_type: int, at: int) -> int:
    if wire_type == 0:
        return _varint(buf, pos, end)[1]
    if wire_type == 1:
        if end - pos < 8:
            raise _bad(f"truncated fixed64 at byte {pos}")
        return pos + 8
    if wire_type == 2:
        return _length(buf, pos, end)[1]
    if wire_type == 5:
        if end - pos < 4:
            raise _bad(f"truncated fixed32 at byte {pos}")
        return pos + 4
    raise _bad(f"unsupported wire type {wire_type} at byte {at}")


def _wrong_type(what: str, wire_type: int, at: int) -> DecodeError:
    return _bad(f"{what}: wire type {wire_type} at byte {at}")


def _label(buf: bytes, pos: int, end: int) -> tuple[bytes, bytes]:
    name = value = b""
    while pos < end:
        at = pos
        field, wire_type, pos = _tag(buf, pos, end)
        if field == 1 or field == 2:
            if wire_type != 2:
                raise _wrong_type("label name" if field == 1 else "label value", wire_type, at)
            start, pos = _length(buf, pos, end)
            if field == 1:
                name = buf[start:pos]
            else:
                value = buf[start:pos]
        else:
            pos = _skip(buf, pos, end, wire_type, at)
    return name, value


def _sample(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """(the value's 8 raw little-endian bytes, the timestamp): raw bytes keep NaN payloads."""
    value, timestamp = b"\0" * 8, 0
    while pos < end:
        at = pos
        field, wire_type, pos = _tag(buf, pos, end)
        if field == 1:
            if wire_type != 1:
                raise _wrong_type("sample value", wire_type, at)
            if end - pos < 8:
                raise _bad(f"truncated fixed64 at byte {pos}")
            value, pos = buf[pos : pos + 8], pos + 8
        elif field == 2:
            if wire_type != 0:
                raise _wrong_type("sample timestamp", wire_type, at)
            timestamp, pos = _varint(buf, pos, end)
            if timestamp >= _I64_SIGN:
                timestamp -= _I64_WRAP
        else:
            pos = _skip(buf, pos, end, wire_type, at)
    return value, timestamp


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _canonical(labels: list[tuple[bytes, bytes]], number: int) -> bytes:
    """Validate one series' labels (wire order) and return its canonical blob."""
    for i, (name, value) in enumerate(labels):
        problem = None
        if not name:
            problem = "empty label name"
        elif not _is_utf8(name):
            problem = "label name is not UTF-8"
        elif b"\0" in name:
            problem = "label name contains NUL"
        elif not _is_utf8(value):
            problem = "label value is not UTF-8"
        elif b"\0" in value:
            problem = "label value contains NUL"
        if problem:
            raise _fail("bad_labels", f"series {number}, label {i}: {problem}")
    if any(a[0] >= b[0] for a, b in pairwise(labels)):
        labels = sorted(labels, key=lambda label: label[0])
        if any(a[0] == b[0] for a, b in pairwise(labels)):
            raise _fail("bad_labels", f"series {number}: duplicate label name")
    if not any(name == b"__name__" and value for name, value in labels):
        raise _fail("bad_labels", f"series {number}: no __name__ label")
    return b"".join(name + b"\0" + value + b"\0" for name, value in labels if value)


class Decoder:
    """The native ``Decoder``'s twin: limits, and a label-set cache of ``cache_size`` slots
    (LRU here, CLOCK there: which slot holds what differs, what a request decodes to not).

    ``decode(body)`` returns ``(series, timestamps, values, slots, new_slots, new_blobs,
    counts)`` like the native one: ``series[k]`` is sample k's request-local label set,
    ``slots[i]`` that set's cache slot, ``new_slots``/``new_blobs`` the slots this request
    filled and their canonical blobs.
    """

    def __init__(self, max_bytes: int, max_samples: int, cache_size: int) -> None:
        if max_bytes <= 0 or max_samples <= 0 or cache_size <= 0:
            raise ValueError("limits and cache size must be positive")
        self.max_bytes, self.max_samples, self.cache_size = max_bytes, max_samples, cache_size
        self._lru: OrderedDict[bytes, int] = OrderedDict()

    def decode(self, body: bytes) -> Decoded:
        if len(body) > max_compressed_len(self.max_bytes):
            raise _fail("too_large", f"body of {len(body)} bytes is above the limit")
        length = snappy_length(body)
        if length is None:
            raise _fail("bad_snappy", "bad snappy length header")
        if length > self.max_bytes:
            raise _fail(
                "too_large",
                f"decompressed size {length} is above the limit of {self.max_bytes} bytes",
            )
        return self.decode_protobuf(snappy_decompress(body, length))

    def decode_protobuf(self, buf: bytes) -> Decoded:
        """Decode an uncompressed ``prometheus.WriteRequest``."""
        blobs, series, timestamps, values, counts = _decode_request(
            buf, self.max_samples, self.cache_size
        )
        slots, new_slots, new_blobs = [], [], []
        for blob in blobs:  # at most cache_size: the least recent entry is never this request's
            slot = self._lru.get(blob)
            if slot is None:
                slot = len(self._lru)
                if slot == self.cache_size:
                    slot = self._lru.popitem(last=False)[1]
                self._lru[blob] = slot
                new_slots.append(slot)
                new_blobs.append(blob)
            else:
                self._lru.move_to_end(blob)
            slots.append(slot)
        return (
            series,
            timestamps,
            values,
            np.array(slots, dtype=np.int64),
            new_slots,
            new_blobs,
            counts,
        )


def _decode_request(
    buf: bytes, max_samples: int, max_label_sets: int
) -> tuple[list[bytes], NDArray[np.int32], NDArray[np.int64], NDArray[np.float64], Counts]:
    """One request, statelessly: its distinct blobs (first-seen order) and its columns."""
    index: dict[bytes, int] = {}
    newest: list[int | None] = []
    series: list[int] = []
    timestamps: list[int] = []
    values = bytearray()
    n_series = without_samples = histograms = exemplars = metadata = 0
    out_of_order = duplicates = 0
    pos, end = 0, len(buf)
    while pos < end:
        at = pos
        field, wire_type, pos = _tag(buf, pos, end)
        if field == 3:
            if wire_type != 2:
                raise _wrong_type("metadata", wire_type, at)
            pos = _length(buf, pos, end)[1]
            metadata += 1
            continue
        if field != 1:
            pos = _skip(buf, pos, end, wire_type, at)
            continue
        if wire_type != 2:
            raise _wrong_type("timeseries", wire_type, at)
        s, pos = _length(buf, pos, end)
        number, n_series = n_series, n_series + 1
        label_fields: list[tuple[int, int]] = []
        first = len(timestamps)
        while s < pos:
            at = s
            field, wire_type, s = _tag(buf, s, pos)
            if 1 <= field <= 4 and wire_type != 2:
                what = ("label", "sample", "exemplar", "histogram")[field - 1]
                raise _wrong_type(what, wire_type, at)
            if field == 1:
                start, s = _length(buf, s, pos)
                label_fields.append((start, s))
            elif field == 2:
                start, s = _length(buf, s, pos)
                value, timestamp = _sample(buf, start, s)
                if len(timestamps) >= max_samples:
                    raise _fail("too_large", f"more than {max_samples} samples")
                values += value
                timestamps.append(timestamp)
            elif field == 3 or field == 4:
                s = _length(buf, s, pos)[1]
                if field == 3:
                    exemplars += 1
                else:
                    histograms += 1
            else:
                s = _skip(buf, s, pos, wire_type, at)
        labels = [_label(buf, start, stop) for start, stop in label_fields]
        blob = _canonical(labels, number)
        if len(timestamps) == first:
            without_samples += 1
            continue
        i = index.get(blob)
        if i is None:
            if len(index) >= max_label_sets:
                raise _fail(
                    "too_large",
                    f"more than {max_label_sets} distinct label sets (the decoder's cache size)",
                )
            i = index[blob] = len(index)
            newest.append(None)
        series.extend([i] * (len(timestamps) - first))
        seen = newest[i]
        for ts in timestamps[first:]:
            if seen is not None and ts < seen:
                out_of_order += 1
            elif ts == seen:
                duplicates += 1
            else:
                seen = ts
        newest[i] = seen
    counts = (n_series, without_samples, histograms, exemplars, metadata, out_of_order, duplicates)
    return (
        list(index),
        np.array(series, dtype=np.int32),
        np.array(timestamps, dtype=np.int64),
        np.frombuffer(bytes(values), dtype="<f8").astype(np.float64),
        counts,
    )
