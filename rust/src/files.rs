//! Whole files read into one buffer: the files source's batch of one-message files.
//!
//! In Python, a loop of open/read/close on a background thread gives the GIL up and takes it
//! back at every system call; with the pipeline busy on the main thread, that cost four times
//! the read itself. Here the loop runs without the GIL, split over threads.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// One thread's share of the files: the first one's index, their names, their offsets into
/// the whole buffer (one more than names) and their part of it.
struct Part<'a> {
    first: usize,
    rels: &'a [String],
    span: &'a [usize],
    out: &'a mut [u8],
}

/// Read file `prefix + rels[i]` into `out[offsets[i]..offsets[i + 1]]` for every i
/// (`offsets[0]` is 0). Returns the index of the first file that could not be read whole,
/// or whose size is not the expected one (it changed since it was listed), if any.
pub fn read_into(
    prefix: &str,
    rels: &[String],
    offsets: &[usize],
    out: &mut [u8],
    threads: usize,
) -> Option<usize> {
    let per = rels.len().div_ceil(threads.max(1)).max(1);
    let mut parts = Vec::new();
    let mut rest = out;
    for (k, names) in rels.chunks(per).enumerate() {
        let first = k * per;
        let span = &offsets[first..=first + names.len()];
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(span[names.len()] - span[0]);
        parts.push(Part {
            first,
            rels: names,
            span,
            out: mine,
        });
        rest = tail;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|p| s.spawn(move || read_part(prefix, p.rels, p.span, p.out).map(|i| p.first + i)))
            .collect();
        // a thread that panicked: report a failure, and the caller reads file by file
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or(Some(0)))
            .min()
    })
}

/// One thread's share: `span` holds its files' offsets into the whole buffer, `out` starts at
/// `span[0]`.
fn read_part(prefix: &str, rels: &[String], span: &[usize], out: &mut [u8]) -> Option<usize> {
    let base = span[0];
    let mut path = String::with_capacity(prefix.len() + 64);
    let mut extra = [0u8; 1];
    for (i, rel) in rels.iter().enumerate() {
        path.clear();
        path.push_str(prefix);
        path.push_str(rel);
        let into = &mut out[span[i] - base..span[i + 1] - base];
        if !read_exactly(&path, into, &mut extra) {
            return Some(i);
        }
    }
    None
}

/// Whether the file holds exactly `into.len()` bytes, now read into `into`.
fn read_exactly(path: &str, into: &mut [u8], extra: &mut [u8; 1]) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut at = 0;
    while at < into.len() {
        match file.read_at(&mut into[at..], at as u64) {
            Ok(0) => return false, // shorter than listed
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    matches!(file.read_at(extra, at as u64), Ok(0)) // a byte more: it grew
}

/// The size of every file `prefix + rels[i]`, or None for one that cannot be looked at.
pub fn sizes(prefix: &str, rels: &[String]) -> Vec<Option<u64>> {
    let mut path = String::with_capacity(prefix.len() + 64);
    rels.iter()
        .map(|rel| {
            path.clear();
            path.push_str(prefix);
            path.push_str(rel);
            std::fs::metadata(&path).ok().map(|m| m.len())
        })
        .collect()
}
