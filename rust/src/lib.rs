//! headwater's compiled helpers: the Avro decoder (a micro-batch of Avro bodies straight into
//! Arrow) and the files source's whole-file reads.
//!
//! The Python side frames the messages (containers, Confluent, schemaless) and groups them by
//! writer schema; each group comes here as the writer schema (JSON, named types inlined), the
//! Arrow type its records map to (`headwater.decoders.avro_arrow`), and the bodies. Every body
//! is decoded on its own into column builders; a body that does not decode, or leaves bytes
//! over, is rolled back and reported with its reason while the others are kept. Every read is
//! bounds-checked and every loop consumes input or stops, so corrupt input ends in an error,
//! never in a hang. The GIL is released while decoding, so threads decode groups side by side.

mod columns;
mod cursor;
mod files;
mod plan;

use arrow_array::{Array, BinaryArray, RecordBatch, StructArray};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_pyarrow::{PyArrowType, ToPyArrow};
use arrow_schema::DataType;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::ptr::NonNull;
use std::sync::Arc;

use cursor::Cursor;

// The decoded columns (a batch's cutouts alone are ~200 MB) come from mimalloc, which keeps
// freed memory for the next batch: with the system allocator each batch's buffers were fresh
// pages from the kernel, and zeroing them cost a fifth of the decoding time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bodies a group's decoding refused: (index, reason).
type Refused = Vec<(usize, String)>;

/// Bodies decoded before the builders reserve room for the rest of the batch.
const SAMPLE_BODIES: usize = 16;

/// Decode `bodies` (each holding `counts[i]` records) written with `schema` into a
/// `pyarrow.RecordBatch` of type `arrow` (a struct type: one field per column) less the
/// top-level fields in `drop`, and the `(index, reason)` of every body that did not decode.
#[pyfunction]
fn decode<'py>(
    py: Python<'py>,
    schema: &str,
    arrow: PyArrowType<DataType>,
    bodies: Vec<PyBuffer<u8>>,
    counts: Vec<u64>,
    drop: Vec<String>,
) -> PyResult<(Bound<'py, PyAny>, Refused)> {
    if bodies.len() != counts.len() {
        return Err(PyValueError::new_err(format!(
            "{} bodies but {} record counts",
            bodies.len(),
            counts.len()
        )));
    }
    let avro: serde_json::Value = serde_json::from_str(schema)
        .map_err(|e| PyValueError::new_err(format!("writer schema is not JSON: {e}")))?;
    let mut top = plan::compile_top(&avro, &arrow.0, &drop).map_err(PyValueError::new_err)?;
    let mut slices: Vec<&[u8]> = Vec::with_capacity(bodies.len());
    for (i, b) in bodies.iter().enumerate() {
        if !b.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "body {i} is not a contiguous buffer"
            )));
        }
        // SAFETY: the PyBuffer keeps the exporting object alive and its memory fixed until
        // it is dropped at the end of this function; the bytes are only read.
        slices
            .push(unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.item_count()) });
    }
    let (data, failed) = py
        .detach(|| {
            let failed = decode_all(&mut top, &slices, &counts);
            top.finish().map(|d| (d, failed))
        })
        .map_err(PyValueError::new_err)?;
    let batch = RecordBatch::from(StructArray::from(data));
    Ok((batch.to_pyarrow(py)?, failed))
}

/// Decode every body into `top`; a body that fails is rolled back and reported.
fn decode_all(top: &mut columns::Col, bodies: &[&[u8]], counts: &[u64]) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    for (i, (body, &count)) in bodies.iter().zip(counts).enumerate() {
        if i == SAMPLE_BODIES && top.len() > 0 {
            // room for the whole batch at the sample's size (plus some), grown at once
            top.reserve_scaled(bodies.len().div_ceil(SAMPLE_BODIES) + 1);
        }
        let before = top.len();
        if let Err(reason) = decode_body(top, body, count) {
            top.truncate(before);
            failed.push((i, reason));
        }
    }
    failed
}

fn decode_body(top: &mut columns::Col, body: &[u8], count: u64) -> Result<(), String> {
    let mut cur = Cursor::new(body);
    for _ in 0..count {
        top.read(&mut cur)?;
    }
    match cur.remaining() {
        0 => Ok(()),
        left => Err(format!(
            "{left} bytes left over after the record: the message was written with another \
             schema or is corrupt"
        )),
    }
}

/// The files `prefix + rels[i]` (of `sizes[i]` bytes) as a `pyarrow.BinaryArray`, one value
/// per file, read on `threads` threads without the GIL; or the index of the first file that
/// could not be read or whose size is not the one listed: `(array, None)` or `(None, index)`.
#[pyfunction]
fn read_files<'py>(
    py: Python<'py>,
    prefix: &str,
    rels: Vec<String>,
    sizes: Vec<usize>,
    threads: usize,
) -> PyResult<(Option<Bound<'py, PyAny>>, Option<usize>)> {
    if sizes.len() != rels.len() {
        return Err(PyValueError::new_err(format!(
            "{} files but {} sizes",
            rels.len(),
            sizes.len()
        )));
    }
    let mut offsets = Vec::with_capacity(rels.len() + 1);
    offsets.push(0usize);
    for size in &sizes {
        offsets.push(offsets[offsets.len() - 1] + size);
    }
    let total = offsets[rels.len()];
    if total > i32::MAX as usize {
        return Err(PyValueError::new_err(format!(
            "{total} bytes in one array: at most {} (split the files)",
            i32::MAX
        )));
    }
    match py.detach(|| files::read_all(prefix, &rels, &offsets, threads)) {
        Err(failed) => Ok((None, Some(failed))),
        Ok(mut data) => {
            let ends: Vec<i32> = offsets.iter().map(|&o| o as i32).collect();
            let (ptr, len) = (
                NonNull::new(data.as_mut_ptr()).expect("a Vec's pointer"),
                total,
            );
            // SAFETY: the Vec's heap memory does not move when the Vec is moved into its
            // owner, and it lives (all `len` bytes written) until Arrow drops the owner
            let values =
                unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(files::Pooled(data))) };
            let array = BinaryArray::new(OffsetBuffer::new(ScalarBuffer::from(ends)), values, None);
            Ok((Some(array.to_data().to_pyarrow(py)?), None))
        }
    }
}

/// The size of every file `prefix + rels[i]` (None: it cannot be looked at), without the GIL.
#[pyfunction]
fn file_sizes(py: Python<'_>, prefix: &str, rels: Vec<String>) -> Vec<Option<u64>> {
    py.detach(|| files::sizes(prefix, &rels))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(read_files, m)?)?;
    m.add_function(wrap_pyfunction!(file_sizes, m)?)?;
    Ok(())
}
