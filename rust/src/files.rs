//! Whole files read into one buffer: the files source's batch of one-message files.
//!
//! In Python, a loop of open/read/close on a background thread gives the GIL up and takes it
//! back at every system call; with the pipeline busy on the main thread, that cost four times
//! the read itself. Here the loop runs without the GIL, split over threads.
//!
//! A batch's buffer (a few hundred MB) is larger than any allocator keeps for reuse: freed,
//! it went back to the kernel, and the next batch's read had the kernel zero 350 MB of fresh
//! pages first (perf: an eighth of the stream worker's CPU, stamps kept). So the last few
//! buffers are kept here (see [`Pooled`]) and a read takes one that fits, without zeroing.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// Buffers kept for reuse: a backlog has two batches' reads alive at once (the batch being
/// processed and the one read ahead), and each frees its buffer for the next reads.
const KEPT: usize = 2;
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A read buffer lent to Arrow: when Arrow drops the batch's array, the buffer goes back to
/// the pool (the oldest kept one is freed if the pool is full).
pub struct Pooled(pub Vec<u8>);

impl Drop for Pooled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// An empty buffer for `total` bytes: a kept one that fits (not more than twice as large,
/// so a stream of small batches does not pin a backlog's buffers), else a new one with room
/// for the next batch to be a little larger.
fn take(total: usize) -> Vec<u8> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let fits = (0..pool.len())
        .filter(|&i| (total..=total.saturating_mul(2)).contains(&pool[i].capacity()))
        .min_by_key(|&i| pool[i].capacity());
    match fits {
        Some(i) => pool.remove(i),
        None => Vec::with_capacity(total + total / 8),
    }
}

fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 {
        return;
    }
    buffer.clear();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(buffer);
    if pool.len() > KEPT {
        pool.remove(0);
    }
}

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
    let mut data = take(total);
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
        Some(i) => {
            give_back(data);
            Err(i)
        }
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
