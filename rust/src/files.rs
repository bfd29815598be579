//! Whole files read into one buffer: the files source's batch of one-message files.
//!
//! In Python, a loop of open/read/close on a background thread gives the GIL up and takes it
//! back at every system call; with the pipeline busy on the main thread, that cost four times
//! the read itself. Here the loop runs without the GIL, split over threads, into memory from
//! this library's allocator: a batch's few hundred MB are reused by the next batch instead of
//! coming back from the kernel as fresh pages to zero (Arrow's pool gave them back).

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// One thread's share of the files: the first one's index, their names, their offsets into
/// the whole buffer (one more than names) and their part of it.
struct Part<'a> {
    first: usize,
    rels: &'a [String],
    span: &'a [usize],
    out: &'a mut [MaybeUninit<u8>],
}

/// The bytes of every file `prefix + rels[i]` one after the other (`offsets[i]` is where file
/// i starts, `offsets[rels.len()]` the total), or the index of the first file that could not
/// be read whole or whose size is not the one listed (it changed since it was listed).
pub fn read_all(
    prefix: &str,
    rels: &[String],
    offsets: &[usize],
    threads: usize,
) -> Result<Vec<u8>, usize> {
    let total = offsets[rels.len()];
    let mut data: Vec<u8> = Vec::with_capacity(total);
    let out = &mut data.spare_capacity_mut()[..total];
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
    let failed = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|p| s.spawn(move || read_part(prefix, p.rels, p.span, p.out).map(|i| p.first + i)))
            .collect();
        // a thread that panicked: report a failure, and the caller reads file by file
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or(Some(0)))
            .min()
    });
    match failed {
        Some(i) => Err(i),
        None => {
            // SAFETY: every byte of 0..total was written by a read that returned it in full
            unsafe { data.set_len(total) };
            Ok(data)
        }
    }
}

/// One thread's share: `span` holds its files' offsets into the whole buffer, `out` starts at
/// `span[0]`.
fn read_part(
    prefix: &str,
    rels: &[String],
    span: &[usize],
    out: &mut [MaybeUninit<u8>],
) -> Option<usize> {
    let base = span[0];
    let mut path = String::with_capacity(prefix.len() + 64);
    for (i, rel) in rels.iter().enumerate() {
        path.clear();
        path.push_str(prefix);
        path.push_str(rel);
        if !read_exactly(&path, &mut out[span[i] - base..span[i + 1] - base]) {
            return Some(i);
        }
    }
    None
}

/// Whether the file holds exactly `into.len()` bytes, now all written into `into`.
fn read_exactly(path: &str, into: &mut [MaybeUninit<u8>]) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut at = 0;
    while at < into.len() {
        let rest = &mut into[at..];
        // SAFETY: the kernel writes at most rest.len() bytes at a pointer into memory this
        // function holds exclusively; nothing reads it before the whole file is in
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                rest.as_mut_ptr().cast(),
                rest.len(),
                at as libc::off_t,
            )
        };
        match n {
            0 => return false, // shorter than listed
            n if n > 0 => at += n as usize,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
    let mut extra = [0u8; 1];
    matches!(file.read_at(&mut extra, at as u64), Ok(0)) // a byte more: it grew
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
