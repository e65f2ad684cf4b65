//! `mendloop_remote_write`: the native Prometheus remote-write 1.0 decoder behind
//! loop/sources/remote_write.py. Decoding is in `decoder` (pure Rust, no Python), the
//! label-set cache in `cache`; this file only hands results to Python without an object
//! per sample:
//!
//! ```python
//! import mendloop_remote_write as rw
//! d = rw.Decoder(max_bytes, max_samples, cache_size)
//! series, timestamps, values, slots, new_slots, new_blobs, counts = d.decode(body)
//! # series: int32[n], request-local label-set index of each sample
//! # timestamps: int64[n] (ms); values: float64[n]
//! # slots: int64[k], cache slot of each request-local label set
//! # new_slots / new_blobs: slots this request filled and their canonical label blobs
//! # counts: (timeseries, series_without_samples, histograms, exemplars, metadata,
//! #          out_of_order, duplicate_timestamps)
//! ```
//!
//! Refusals raise `mendloop_remote_write.DecodeError(reason, message)`. The decoder has no
//! panics by construction (checked reads, no unwrap on input); `catch_unwind` is a second
//! net so that a bug still becomes `DecodeError("internal", ...)` (and an emptied cache),
//! never a `PanicException`. The GIL is released while decoding; a mutex serialises the
//! calls on one decoder (use one per worker thread for parallel decoding).

pub mod cache;
pub mod decoder;
pub mod wire;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use numpy::PyArray1;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

create_exception!(
    mendloop_remote_write,
    DecodeError,
    PyValueError,
    "A refused remote-write body: args are (reason, message)."
);

/// A decoder with fixed limits and a label-set cache of `cache_size` slots.
#[pyclass(frozen, module = "mendloop_remote_write")]
struct Decoder {
    inner: Mutex<decoder::Decoder>,
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (max_bytes, max_samples, cache_size))]
    fn new(max_bytes: usize, max_samples: usize, cache_size: usize) -> PyResult<Self> {
        if max_bytes == 0 || max_samples == 0 || cache_size == 0 || cache_size > u32::MAX as usize {
            return Err(PyValueError::new_err(
                "limits and cache size must be positive",
            ));
        }
        let limits = decoder::Limits {
            max_bytes,
            max_samples,
        };
        Ok(Decoder {
            inner: Mutex::new(decoder::Decoder::new(limits, cache_size)),
        })
    }

    /// Decode one snappy-compressed `prometheus.WriteRequest`; see the module docstring.
    fn decode<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
        // The lock is taken without the GIL: a thread holding the GIL never waits on it.
        let result = py.detach(
            || -> Result<(decoder::Decoded, Vec<Vec<u8>>), wire::DecodeError> {
                let mut guard = self.inner.lock().map_err(|_| wire::DecodeError {
                    reason: wire::Reason::Internal,
                    message: "decoder lock poisoned".into(),
                })?;
                let inner = &mut *guard;
                let outcome = catch_unwind(AssertUnwindSafe(|| inner.decode(body)));
                let decoded = outcome.unwrap_or_else(|_| {
                    inner.reset();
                    Err(wire::DecodeError {
                        reason: wire::Reason::Internal,
                        message: "decoder bug (panic caught; label-set cache emptied)".into(),
                    })
                })?;
                let blobs: Vec<Vec<u8>> = decoded
                    .created
                    .iter()
                    .map(|&slot| inner.canonical(slot).to_vec())
                    .collect();
                Ok((decoded, blobs))
            },
        );
        let (decoded, blobs) =
            result.map_err(|e| DecodeError::new_err((e.reason.as_str(), e.message)))?;
        let new_blobs = PyList::empty(py);
        for blob in &blobs {
            new_blobs.append(PyBytes::new(py, blob))?;
        }
        let c = decoded.counts;
        let counts = (
            c.timeseries,
            c.series_without_samples,
            c.histograms,
            c.exemplars,
            c.metadata,
            c.out_of_order,
            c.duplicate_timestamps,
        );
        let slots: Vec<i64> = decoded.slots.iter().map(|&s| i64::from(s)).collect();
        (
            PyArray1::from_vec(py, decoded.series),
            PyArray1::from_vec(py, decoded.timestamps),
            PyArray1::from_vec(py, decoded.values),
            PyArray1::from_vec(py, slots),
            decoded.created,
            new_blobs,
            counts,
        )
            .into_pyobject(py)
    }
}

#[pymodule]
fn mendloop_remote_write(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    m.add("DecodeError", m.py().get_type::<DecodeError>())?;
    Ok(())
}
