//! Opening the trace file (`MEMSHIM_OUTPUT`) without two processes writing
//! into one file.
//!
//! A program that starts others (a compiler driver, a shell script) gives
//! each of them the same `MEMSHIM_OUTPUT`. Without `%p` in it, every process
//! would truncate and interleave the same file, and all of the traces would
//! be lost. So the writer of a trace file holds an exclusive `flock` on it
//! for its whole life: a process that finds the file locked by a live writer
//! writes `<path>.<pid>` instead and says so on stderr. A lock left by a
//! process that has ended is gone with it, so the next run reuses the path.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Opens `path` for a new trace (truncated), or `<path>.<pid>` if another
/// live process is writing `path`.
pub fn open(path: &Path, pid: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        file.set_len(0)?;
        return Ok(file);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        // No locking on this file system: write the file as asked.
        file.set_len(0)?;
        return Ok(file);
    }
    let own = sibling(path, pid);
    crate::warn(&format!(
        "{} is being written by another process; this one (pid {pid}) writes {} (put %p in MEMSHIM_OUTPUT for one file per process)",
        path.display(),
        own.display()
    ));
    let file = File::create(&own)?;
    // SAFETY: as above. Best effort: this path is this pid's own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok(file)
}

/// `<path>.<pid>`.
fn sibling(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{pid}"));
    PathBuf::from(name)
}
