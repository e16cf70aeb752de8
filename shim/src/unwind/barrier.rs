//! Asymmetric memory barriers between the module registry's readers and its
//! writers.
//!
//! A capture marks its reader slot, then loads the module snapshot; a writer
//! publishes a new snapshot, then reads the slots. Each side needs a full
//! barrier between its store and its load, or both could miss the other's
//! store (Dekker's pattern). A capture happens on every recorded allocation
//! and a writer only at start-up, `dlopen` and `dlclose`, so the cost is
//! moved to the writer: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` makes
//! every running thread of the process execute a full barrier, and the
//! reader's barrier becomes a compiler fence. That removes an `xchg` from
//! every capture: a third of the capture function's own time in the
//! allocation microbenchmark (the scenario is the one `kernel/sched/
//! membarrier.c` documents as guaranteed: `x = 1; membarrier(); r2 = y`
//! against `y = 1; barrier(); r1 = x`).
//!
//! The process must register first (once; a forked child again, since
//! registration belongs to the address space). Where the system call is
//! missing or refused (kernels before 4.14, seccomp filters), readers keep
//! a `SeqCst` store and writers a `SeqCst` fence.

use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicU64, Ordering};

use crate::errno;

/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED` (`linux/membarrier.h`; not in `libc`).
const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
/// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`.
const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Whether this process is registered: readers may use a compiler fence.
static REGISTERED: AtomicBool = AtomicBool::new(false);

fn membarrier(cmd: libc::c_long) -> bool {
    // SAFETY: membarrier takes no pointers; errno is restored for the program.
    errno::preserved(|| unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }) == 0
}

/// Registers the process for expedited barriers. Call before any thread
/// reads the registry (at start-up, and in a forked child before it starts
/// threads); if it fails, readers keep their full barrier.
pub fn register() {
    REGISTERED.store(membarrier(REGISTER_PRIVATE_EXPEDITED), Ordering::SeqCst);
}

/// A reader's store of its slot's odd sequence, ordered before its load of
/// the snapshot (together with the writer's [`after_publish`]).
#[inline(always)]
pub fn mark_reading(seq: &AtomicU64, odd: u64) {
    if REGISTERED.load(Ordering::Relaxed) {
        seq.store(odd, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    } else {
        seq.store(odd, Ordering::SeqCst);
    }
}

/// A writer's barrier between publishing a snapshot and reading the slots.
/// Returns `false` if the readers' side could not be ordered (the expedited
/// barrier failed while readers rely on it): the old snapshot must then be
/// kept, not freed.
pub fn after_publish() -> bool {
    fence(Ordering::SeqCst);
    !REGISTERED.load(Ordering::SeqCst) || membarrier(PRIVATE_EXPEDITED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_is_ordered_with_its_readers() {
        register();
        // Registered, the expedited barrier must work; if registration was
        // refused, readers keep full barriers and the fence suffices.
        assert!(after_publish());
        let seq = AtomicU64::new(0);
        mark_reading(&seq, 1);
        assert_eq!(seq.load(Ordering::Relaxed), 1);
    }
}
