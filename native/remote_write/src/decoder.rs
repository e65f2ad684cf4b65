//! The pure decoder: a snappy-compressed `prometheus.WriteRequest` (remote-write 1.0) ->
//! per-sample columns (request-local label-set index, timestamp, value) and the label-set
//! cache slots they refer to.
//!
//! No Python here, so `cargo test` covers it and the bindings stay thin. The rules below are
//! mirrored line by line by the Python fallback (loop/sources/remote_write_fallback.py); the
//! test suite checks that both give identical results on valid, invalid and fuzzed input.
//!
//! Rules (the first violation met refuses the whole request):
//! * body: longer than `32 + max_bytes + max_bytes / 6` (snappy's bound) -> too_large; a
//!   length header that is not a varint of 1-5 bytes at most 2^32-1 -> bad_snappy; an
//!   announced length above `max_bytes` -> too_large (before any allocation); a block that
//!   does not decompress to exactly that length -> bad_snappy.
//! * protobuf: a truncated or over-long (>10 bytes) varint, a tag above 2^32-1, field number
//!   0, a length past the end of its message, wire types 3/4 (groups), 6, 7, or a known field
//!   with another wire type than the schema's -> bad_protobuf. Unknown fields are skipped;
//!   of a repeated scalar field the last occurrence wins (protobuf semantics).
//! * WriteRequest: 1 timeseries, 3 metadata (counted, skipped). TimeSeries: 1 labels,
//!   2 samples (parsed where met), 3 exemplars and 4 histograms (counted, skipped: native
//!   histograms are not supported). Label: 1 name, 2 value. Sample: 1 value (double),
//!   2 timestamp (int64 ms). More than `max_samples` samples -> too_large.
//! * labels, once their series has been read: each Label message is parsed in wire order
//!   (bad_protobuf), then per label in wire order an empty name, a name or value that is not
//!   UTF-8, or a NUL byte in either -> bad_labels; then a duplicate name, then a missing or
//!   empty `__name__` -> bad_labels.
//! * canonical label set ("blob"): labels sorted by name (bytewise), empty values dropped
//!   (Prometheus treats an empty value as an absent label), each as `name \0 value \0`.
//! * a series without samples registers no label set. A request with more distinct label
//!   sets than the cache holds -> too_large, when the first one too many is met.
//! * within the request, a sample older than the newest earlier sample of its label set is
//!   counted out_of_order, an equal timestamp duplicate_timestamps; both are kept.
//!
//! The cache (cache.rs) changes speed, never results: a label byte string it knows was
//! validated before, and validation depends on those bytes alone.

use crate::cache::Cache;
use crate::wire::{refuse, wrong_type, DecodeError, Reader, Reason};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_samples: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub timeseries: u64,
    pub series_without_samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
    pub metadata: u64,
    pub out_of_order: u64,
    pub duplicate_timestamps: u64,
}

/// One decoded request. Sample `k` belongs to label set `series[k]`, which is cache slot
/// `slots[series[k]]`; `created` are the slots this request filled (their blobs are new).
#[derive(Debug, Default)]
pub struct Decoded {
    pub series: Vec<i32>,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
    pub slots: Vec<u32>,
    pub created: Vec<u32>,
    pub counts: Counts,
}

/// The largest snappy block a `max_bytes` payload can take (snappy's own bound).
pub fn max_compressed_len(max_bytes: usize) -> usize {
    32 + max_bytes + max_bytes / 6
}

/// The uncompressed length a snappy block announces: a varint of 1 to 5 bytes, at most
/// 2^32 - 1 (snappy's format); `None` if the header is not that.
pub fn snappy_length(body: &[u8]) -> Option<usize> {
    let mut value: u64 = 0;
    for (i, &byte) in body.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return usize::try_from(value)
                .ok()
                .filter(|&n| n <= u32::MAX as usize);
        }
    }
    None
}

/// A decoder with its limits, its label-set cache and reusable buffers.
pub struct Decoder {
    pub limits: Limits,
    cache: Cache,
    raw: Vec<u8>,
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    label_fields: Vec<(usize, usize)>,
    labels: Vec<RawLabel>,
    blob: Vec<u8>,
    newest: Vec<Option<i64>>,
}

/// One label as read from the wire: byte ranges of name and value in the request.
#[derive(Clone, Copy)]
struct RawLabel {
    name: (usize, usize),
    value: (usize, usize),
}

impl Decoder {
    pub fn new(limits: Limits, cache_size: usize) -> Self {
        Decoder {
            limits,
            cache: Cache::new(cache_size),
            raw: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// The canonical blob of a slot (valid until the next `decode`).
    pub fn canonical(&self, slot: u32) -> &[u8] {
        self.cache.canonical(slot)
    }

    /// Forget the cache (after a caught panic).
    pub fn reset(&mut self) {
        self.cache.reset();
    }

    /// Decompress a snappy block (remote-write's `Content-Encoding: snappy`) and decode it.
    pub fn decode(&mut self, body: &[u8]) -> Result<Decoded, DecodeError> {
        let max_bytes = self.limits.max_bytes;
        if body.len() > max_compressed_len(max_bytes) {
            return refuse(
                Reason::TooLarge,
                format!("body of {} bytes is above the limit", body.len()),
            );
        }
        let Some(length) = snappy_length(body) else {
            return refuse(Reason::BadSnappy, "bad snappy length header".into());
        };
        if length > max_bytes {
            return refuse(
                Reason::TooLarge,
                format!("decompressed size {length} is above the limit of {max_bytes} bytes"),
            );
        }
        if self.raw.capacity() > 4 * length.max(1 << 20) {
            self.raw = Vec::new(); // do not keep a huge request's buffer for small ones
        }
        self.raw.resize(length, 0);
        match snap::raw::Decoder::new().decompress(body, &mut self.raw) {
            Ok(n) if n == length => {}
            _ => return refuse(Reason::BadSnappy, "snappy frame does not decompress".into()),
        }
        let raw = std::mem::take(&mut self.raw);
        let result = self.decode_protobuf(&raw);
        self.raw = raw;
        result
    }

    /// Decode an uncompressed `prometheus.WriteRequest`.
    pub fn decode_protobuf(&mut self, buf: &[u8]) -> Result<Decoded, DecodeError> {
        self.cache.begin_request();
        let mut request = RequestState {
            buf,
            limits: self.limits,
            cache: &mut self.cache,
            scratch: &mut self.scratch,
            out: Decoded::default(),
        };
        request.scratch.newest.clear();
        let guess = (buf.len() / 24).min(self.limits.max_samples).min(1 << 20);
        request.out.series.reserve(guess);
        request.out.timestamps.reserve(guess);
        request.out.values.reserve(guess);
        match request.run() {
            Ok(()) => {
                let mut out = request.out;
                out.created = self.cache.created.clone();
                Ok(out)
            }
            Err(e) => {
                self.cache.rollback();
                Err(e)
            }
        }
    }
}

struct RequestState<'a, 'c> {
    buf: &'a [u8],
    limits: Limits,
    cache: &'c mut Cache,
    scratch: &'c mut Scratch,
    out: Decoded,
}

impl RequestState<'_, '_> {
    fn run(&mut self) -> Result<(), DecodeError> {
        let mut request = Reader::new(self.buf, (0, self.buf.len()));
        while request.more() {
            let at = request.pos;
            match request.tag()? {
                (1, 2) => {
                    let range = request.length_delimited()?;
                    self.timeseries(Reader::new(self.buf, range))?;
                }
                (1, wt) => return wrong_type("timeseries", wt, at),
                (3, 2) => {
                    request.length_delimited()?;
                    self.out.counts.metadata += 1;
                }
                (3, wt) => return wrong_type("metadata", wt, at),
                (_, wt) => request.skip(wt, at)?,
            }
        }
        Ok(())
    }

    fn timeseries(&mut self, mut series: Reader<'_>) -> Result<(), DecodeError> {
        let number = self.out.counts.timeseries;
        self.out.counts.timeseries += 1;
        self.scratch.label_fields.clear();
        // The labels' wire bytes, when they are one run of fields: the cache key.
        let (mut region, mut contiguous, mut after_label) = ((0usize, 0usize), true, false);
        let first = self.out.values.len();
        while series.more() {
            let at = series.pos;
            let (field, wire_type) = series.tag()?;
            if field == 1 && wire_type == 2 {
                let range = series.length_delimited()?;
                if self.scratch.label_fields.is_empty() {
                    region.0 = at;
                } else if !after_label {
                    contiguous = false;
                }
                region.1 = series.pos;
                self.scratch.label_fields.push(range);
                after_label = true;
                continue;
            }
            after_label = false;
            match (field, wire_type) {
                (1, wt) => return wrong_type("label", wt, at),
                (2, 2) => {
                    let range = series.length_delimited()?;
                    let (value, timestamp) = sample(Reader::new(self.buf, range))?;
                    if self.out.values.len() >= self.limits.max_samples {
                        return refuse(
                            Reason::TooLarge,
                            format!("more than {} samples", self.limits.max_samples),
                        );
                    }
                    self.out.values.push(value);
                    self.out.timestamps.push(timestamp);
                }
                (2, wt) => return wrong_type("sample", wt, at),
                (3, 2) => {
                    series.length_delimited()?;
                    self.out.counts.exemplars += 1;
                }
                (3, wt) => return wrong_type("exemplar", wt, at),
                (4, 2) => {
                    series.length_delimited()?;
                    self.out.counts.histograms += 1;
                }
                (4, wt) => return wrong_type("histogram", wt, at),
                (_, wt) => series.skip(wt, at)?,
            }
        }
        let last = self.out.values.len();
        let key = contiguous && !self.scratch.label_fields.is_empty();
        let known = if key {
            self.cache.find_raw(&self.buf[region.0..region.1])
        } else {
            None
        };
        let slot = match known {
            Some(slot) => slot,
            None => {
                self.parse_labels()?;
                self.canonical_labels(number)?;
                if first == last {
                    self.out.counts.series_without_samples += 1;
                    return Ok(());
                }
                let slot = self
                    .cache
                    .slot_for(&self.scratch.blob, self.out.slots.len())?;
                if key {
                    self.cache.add_raw(&self.buf[region.0..region.1], slot);
                }
                slot
            }
        };
        if first == last {
            self.out.counts.series_without_samples += 1;
            return Ok(());
        }
        let (index, new) = self.cache.local_index(slot, &mut self.out.slots);
        if new {
            self.scratch.newest.push(None);
        }
        self.out.series.resize(last, index as i32);
        let newest = &mut self.scratch.newest[index as usize];
        for &ts in &self.out.timestamps[first..last] {
            match *newest {
                Some(seen) if ts < seen => self.out.counts.out_of_order += 1,
                Some(seen) if ts == seen => self.out.counts.duplicate_timestamps += 1,
                _ => *newest = Some(ts),
            }
        }
        Ok(())
    }

    /// Parse the series' Label messages, in wire order, into `scratch.labels`.
    fn parse_labels(&mut self) -> Result<(), DecodeError> {
        self.scratch.labels.clear();
        for &range in &self.scratch.label_fields {
            let mut reader = Reader::new(self.buf, range);
            let mut label = RawLabel {
                name: (0, 0),
                value: (0, 0),
            };
            while reader.more() {
                let at = reader.pos;
                match reader.tag()? {
                    (1, 2) => label.name = reader.length_delimited()?,
                    (1, wt) => return wrong_type("label name", wt, at),
                    (2, 2) => label.value = reader.length_delimited()?,
                    (2, wt) => return wrong_type("label value", wt, at),
                    (_, wt) => reader.skip(wt, at)?,
                }
            }
            self.scratch.labels.push(label);
        }
        Ok(())
    }

    /// Validate `scratch.labels` and write the canonical blob into `scratch.blob`.
    ///
    /// One pass writes the wire-order blob and sees whether names are sorted and values
    /// non-empty; the blob is then checked whole (ASCII or UTF-8, two NULs per label), which
    /// holds iff every label passes the per-label checks, since the NUL separators are ASCII.
    /// Only a failure runs the per-label loop that names the first bad label.
    fn canonical_labels(&mut self, number: u64) -> Result<(), DecodeError> {
        let buf = self.buf;
        let text = |range: (usize, usize)| &buf[range.0..range.1];
        let Scratch { labels, blob, .. } = &mut *self.scratch;
        blob.clear();
        let (mut sorted, mut all_valued, mut named) = (true, true, true);
        let mut previous: &[u8] = &[];
        for (i, label) in labels.iter().enumerate() {
            let (name, value) = (text(label.name), text(label.value));
            named &= !name.is_empty();
            all_valued &= !value.is_empty();
            sorted &= i == 0 || previous < name;
            previous = name;
            blob.extend_from_slice(name);
            blob.push(0);
            blob.extend_from_slice(value);
            blob.push(0);
        }
        let nuls: usize = blob.iter().map(|&b| usize::from(b == 0)).sum();
        let clean = named
            && nuls == 2 * labels.len()
            && (blob.is_ascii() || std::str::from_utf8(blob).is_ok());
        if !clean {
            return Err(first_bad_label(buf, labels, number));
        }
        if !sorted {
            labels.sort_by(|a, b| text(a.name).cmp(text(b.name)));
            if labels
                .windows(2)
                .any(|w| text(w[0].name) == text(w[1].name))
            {
                return refuse(
                    Reason::BadLabels,
                    format!("series {number}: duplicate label name"),
                );
            }
        }
        if !labels
            .iter()
            .any(|l| text(l.name) == b"__name__" && l.value.1 > l.value.0)
        {
            return refuse(
                Reason::BadLabels,
                format!("series {number}: no __name__ label"),
            );
        }
        if !sorted || !all_valued {
            blob.clear();
            for label in labels.iter().filter(|l| l.value.1 > l.value.0) {
                blob.extend_from_slice(text(label.name));
                blob.push(0);
                blob.extend_from_slice(text(label.value));
                blob.push(0);
            }
        }
        Ok(())
    }
}

/// The error for the first label, in wire order, that fails a per-label check.
fn first_bad_label(buf: &[u8], labels: &[RawLabel], number: u64) -> DecodeError {
    let text = |range: (usize, usize)| &buf[range.0..range.1];
    for (i, label) in labels.iter().enumerate() {
        let (name, value) = (text(label.name), text(label.value));
        let problem = if name.is_empty() {
            "empty label name"
        } else if std::str::from_utf8(name).is_err() {
            "label name is not UTF-8"
        } else if name.contains(&0) {
            "label name contains NUL"
        } else if std::str::from_utf8(value).is_err() {
            "label value is not UTF-8"
        } else if value.contains(&0) {
            "label value contains NUL"
        } else {
            continue;
        };
        let message = format!("series {number}, label {i}: {problem}");
        return DecodeError {
            reason: Reason::BadLabels,
            message,
        };
    }
    let message = format!("series {number}: labels refused, no label to blame");
    DecodeError {
        reason: Reason::Internal,
        message,
    }
}

fn sample(mut reader: Reader<'_>) -> Result<(f64, i64), DecodeError> {
    let (mut value, mut timestamp) = (0.0f64, 0i64);
    while reader.more() {
        let at = reader.pos;
        match reader.tag()? {
            (1, 1) => value = f64::from_bits(reader.fixed64()?),
            (1, wt) => return wrong_type("sample value", wt, at),
            (2, 0) => timestamp = reader.varint()? as i64,
            (2, wt) => return wrong_type("sample timestamp", wt, at),
            (_, wt) => reader.skip(wt, at)?,
        }
    }
    Ok((value, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_samples: 1000,
    };

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Vec<u8> {
        let mut ts = Vec::new();
        for (name, value) in labels {
            let mut label = Vec::new();
            field(1, name.as_bytes(), &mut label);
            field(2, value.as_bytes(), &mut label);
            field(1, &label, &mut ts);
        }
        for &(value, timestamp) in samples {
            let mut sample = vec![0x09];
            sample.extend_from_slice(&value.to_bits().to_le_bytes());
            sample.push(0x10);
            varint(timestamp as u64, &mut sample);
            field(2, &sample, &mut ts);
        }
        let mut request = Vec::new();
        field(1, &ts, &mut request);
        request
    }

    fn compress(raw: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(raw).unwrap()
    }

    fn blobs(decoder: &Decoder, out: &Decoded) -> Vec<Vec<u8>> {
        out.slots
            .iter()
            .map(|&s| decoder.canonical(s).to_vec())
            .collect()
    }

    #[test]
    fn round_trip_with_canonical_labels_and_counts() {
        let mut raw = series(
            &[("job", "a"), ("__name__", "up"), ("zone", "")],
            &[(1.0, 10), (2.0, 5)],
        );
        raw.extend(series(&[("__name__", "up"), ("job", "a")], &[(3.0, 10)]));
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        raw.extend(series(&[("__name__", "down")], &[(stale, -1)]));
        let mut decoder = Decoder::new(LIMITS, 16);
        let out = decoder.decode(&compress(&raw)).unwrap();
        assert_eq!(
            blobs(&decoder, &out),
            vec![
                b"__name__\0up\0job\0a\0".to_vec(),
                b"__name__\0down\0".to_vec()
            ]
        );
        assert_eq!(out.series, vec![0, 0, 0, 1]);
        assert_eq!(out.timestamps, vec![10, 5, 10, -1]);
        assert_eq!(out.values[3].to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(out.counts.out_of_order, 1);
        assert_eq!(out.counts.duplicate_timestamps, 1);
        assert_eq!(out.counts.timeseries, 3);
        assert_eq!(out.created, out.slots);
        let again = decoder.decode(&compress(&raw)).unwrap();
        assert!(again.created.is_empty() && again.slots == out.slots);
    }

    #[test]
    fn refusals_have_their_reason() {
        let mut decoder = Decoder::new(LIMITS, 16);
        let mut reason = |body: &[u8]| decoder.decode(body).unwrap_err().reason;
        assert_eq!(reason(b""), Reason::BadSnappy);
        assert_eq!(reason(b"\xff\xff\xff\xff\x0f"), Reason::TooLarge);
        assert_eq!(reason(&compress(b"\x0a\x05\x0a")), Reason::BadProtobuf);
        let dup = series(&[("__name__", "x"), ("a", "1"), ("a", "2")], &[]);
        assert_eq!(reason(&compress(&dup)), Reason::BadLabels);
        let many = series(&[("__name__", "x")], &[(1.0, 1); 3]);
        let mut tight = Decoder::new(
            Limits {
                max_bytes: 1 << 20,
                max_samples: 2,
            },
            16,
        );
        assert_eq!(
            tight.decode(&compress(&many)).unwrap_err().reason,
            Reason::TooLarge
        );
    }

    /// Slots are reused (CLOCK), pinned within a request, and a refused request leaves no
    /// slot behind that the caller was not told about.
    #[test]
    fn cache_replacement_pinning_and_rollback() {
        let mut decoder = Decoder::new(LIMITS, 2);
        let one = |name: &str| series(&[("__name__", name)], &[(1.0, 1)]);
        for name in ["a", "b", "c", "a", "d", "b"] {
            let out = decoder.decode(&compress(&one(name))).unwrap();
            assert_eq!(
                blobs(&decoder, &out),
                vec![format!("__name__\0{name}\0").into_bytes()]
            );
        }
        let three = [one("x"), one("y"), one("z")].concat();
        assert_eq!(
            decoder.decode(&compress(&three)).unwrap_err().reason,
            Reason::TooLarge
        );
        let mut bad_tail = [one("p"), one("q")].concat();
        bad_tail.extend_from_slice(b"\x0a\x09");
        assert_eq!(
            decoder.decode(&compress(&bad_tail)).unwrap_err().reason,
            Reason::BadProtobuf
        );
        let out = decoder.decode(&compress(&one("p"))).unwrap();
        assert_eq!(
            out.created, out.slots,
            "p was rolled back, so it is new again"
        );
    }

    /// Every prefix and every single-byte change of a valid request decodes or is refused:
    /// never a panic (the bindings also catch one, but there must be none to catch).
    #[test]
    fn no_panic_on_any_prefix_or_byte_change() {
        let mut raw = series(
            &[("__name__", "up"), ("job", "node")],
            &[(1.0, 1), (2.0, 2)],
        );
        raw.extend(series(&[("__name__", "x")], &[(0.5, -7)]));
        let mut decoder = Decoder::new(LIMITS, 3);
        let frame = compress(&raw);
        for cut in 0..=raw.len() {
            let _ = decoder.decode_protobuf(&raw[..cut]);
            let _ = decoder.decode(&frame[..cut.min(frame.len())]);
        }
        for at in 0..raw.len() {
            for byte in 0..=255u8 {
                let mut changed = raw.clone();
                changed[at] = byte;
                let _ = decoder.decode_protobuf(&changed);
                let mut changed_frame = frame.clone();
                changed_frame[at % frame.len()] = byte;
                let _ = decoder.decode(&changed_frame);
            }
        }
    }
}
