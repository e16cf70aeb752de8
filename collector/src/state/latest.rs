//! Each thread's latest allocation, to tell temporary blocks.
//!
//! A block is *temporary* when the thread that allocated it frees it before
//! allocating anything else. Rather than storing the allocating thread in
//! every live block (4 bytes per block), the tracker remembers, for the few
//! addresses that are still some thread's latest allocation, which thread
//! that is: at most one address per tracked thread.

use rustc_hash::FxHashMap as HashMap;

/// Threads whose latest allocation is remembered; beyond this the memory is reset.
const MAX_TRACKED_THREADS: usize = 4096;

/// The latest allocation of each thread, and the reverse map of those still live.
#[derive(Debug, Clone, Default)]
pub struct LatestAllocs {
    /// Thread id → address of its latest allocation.
    by_thread: HashMap<u32, u64>,
    /// Address → thread whose latest allocation it is, while that block is live.
    owner: HashMap<u64, u32>,
}

impl LatestAllocs {
    /// Thread `tid` was handed the block at `addr`.
    pub fn allocated(&mut self, tid: u32, addr: u64) {
        if self.by_thread.len() >= MAX_TRACKED_THREADS && !self.by_thread.contains_key(&tid) {
            self.by_thread.clear();
            self.owner.clear();
        }
        if let Some(previous) = self.by_thread.insert(tid, addr) {
            if self.owner.get(&previous) == Some(&tid) {
                self.owner.remove(&previous);
            }
        }
        // A duplicate allocation of a live address takes it over from its thread.
        self.owner.insert(addr, tid);
    }

    /// Thread `tid` freed (not by `realloc`) the live block at `addr`: returns
    /// whether that block was `tid`'s latest allocation, i.e. temporary.
    ///
    /// A block released by `realloc` is not reported here: it comes back if
    /// the `realloc` fails, still its thread's latest allocation.
    pub fn freed(&mut self, tid: u32, addr: u64) -> bool {
        self.owner.remove(&addr) == Some(tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allocating_threads_latest_block_is_temporary() {
        let mut t = LatestAllocs::default();
        t.allocated(1, 0x10);
        t.allocated(1, 0x20);
        assert!(!t.freed(1, 0x10), "not the latest any more");
        assert!(t.freed(1, 0x20));
        t.allocated(2, 0x30);
        assert!(!t.freed(1, 0x30), "freed by another thread");
        t.allocated(2, 0x30);
        t.allocated(3, 0x30); // a duplicate by thread 3 replaces thread 2's block
        assert!(!t.freed(2, 0x30));
        t.allocated(3, 0x30);
        assert!(t.freed(3, 0x30));
        assert!(!t.freed(3, 0x30), "forgotten once freed");
    }

    #[test]
    fn too_many_threads_reset_the_memory() {
        let mut t = LatestAllocs::default();
        for tid in 0..MAX_TRACKED_THREADS as u32 {
            t.allocated(tid, 0x1000 + u64::from(tid) * 16);
        }
        assert!(t.freed(5, 0x1000 + 5 * 16));
        t.allocated(7, 0x1000 + 7 * 16); // a known thread: no reset
        t.allocated(1 << 20, 0x10); // a new one: reset
        assert!(!t.freed(6, 0x1000 + 6 * 16));
        assert!(t.freed(1 << 20, 0x10));
    }
}
