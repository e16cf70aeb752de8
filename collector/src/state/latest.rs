//! Each thread's latest allocation, to tell temporary blocks.
//!
//! A block is *temporary* when the thread that allocated it frees it before
//! allocating anything else. Rather than storing the allocating thread in
//! every live block (4 bytes per block), the tracker remembers, for the few
//! addresses that are still some thread's latest allocation, which thread
//! that is: at most one address per tracked thread.
//!
//! The thread of the latest allocation is kept aside, out of the maps: a
//! stream comes in runs of events of one thread, and within a run an
//! allocation or a free of the latest block costs no hashing at all.

use rustc_hash::FxHashMap as HashMap;

/// Threads whose latest allocation is remembered; beyond this the memory is reset.
const MAX_TRACKED_THREADS: usize = 4096;
/// The filter of `owner` is rebuilt exactly on a thread switch when it has
/// at most this many addresses (a bounded cost); otherwise only added to.
const EXACT_FILTER_UPTO: usize = 16;

/// The bit of `addr` in the filter of `owner` (a multiplicative hash).
fn filter_bit(addr: u64) -> u64 {
    1 << (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

/// The thread that allocated last, with its latest allocation.
#[derive(Debug, Clone, Copy)]
struct Current {
    tid: u32,
    addr: u64,
    /// `addr` is still the thread's: not freed, nor allocated since by another thread.
    owned: bool,
}

/// The latest allocation of each thread, and the reverse map of those still live.
#[derive(Debug, Clone, Default)]
pub struct LatestAllocs {
    /// Thread id → address of its latest allocation (for `current`'s thread:
    /// out of date, the key only counts the thread).
    by_thread: HashMap<u32, u64>,
    /// Address → thread whose latest allocation it is, while that block is
    /// live, for every thread but `current`'s.
    owner: HashMap<u64, u32>,
    /// The [`filter_bit`]s of the addresses of `owner`, and maybe of some
    /// removed since: an address whose bit is clear is not in `owner`, and
    /// most addresses allocated or freed are in no other thread's hands.
    owner_filter: u64,
    current: Option<Current>,
}

impl LatestAllocs {
    /// Thread `tid` was handed the block at `addr`.
    #[inline]
    pub fn allocated(&mut self, tid: u32, addr: u64) {
        if !matches!(self.current, Some(c) if c.tid == tid) {
            self.switch_to(tid);
        }
        // A duplicate allocation of a live address takes it over from its thread.
        if self.owner_filter & filter_bit(addr) != 0 {
            self.owner.remove(&addr);
        }
        // The thread's previous latest block is not its latest any more.
        self.current = Some(Current {
            tid,
            addr,
            owned: true,
        });
    }

    /// Makes `tid` the current thread: puts the current one back in the maps
    /// and takes `tid`'s latest allocation out of them.
    #[cold]
    fn switch_to(&mut self, tid: u32) {
        if let Some(c) = self.current.take() {
            self.by_thread.insert(c.tid, c.addr);
            if c.owned {
                self.owner.insert(c.addr, c.tid);
                self.owner_filter |= filter_bit(c.addr);
            }
        }
        if self.by_thread.len() >= MAX_TRACKED_THREADS && !self.by_thread.contains_key(&tid) {
            self.by_thread.clear();
            self.owner.clear();
        }
        let current = match self.by_thread.get(&tid) {
            Some(&addr) => {
                let owned = self.owner.get(&addr) == Some(&tid);
                if owned {
                    self.owner.remove(&addr);
                }
                Current { tid, addr, owned }
            }
            None => {
                self.by_thread.insert(tid, 0);
                Current {
                    tid,
                    addr: 0,
                    owned: false,
                }
            }
        };
        self.current = Some(current);
        if self.owner.len() <= EXACT_FILTER_UPTO {
            self.owner_filter = self.owner.keys().fold(0, |f, &a| f | filter_bit(a));
        }
    }

    /// Thread `tid` freed (not by `realloc`) the live block at `addr`: returns
    /// whether that block was `tid`'s latest allocation, i.e. temporary.
    ///
    /// A block released by `realloc` is not reported here: it comes back if
    /// the `realloc` fails, still its thread's latest allocation.
    #[inline]
    pub fn freed(&mut self, tid: u32, addr: u64) -> bool {
        if let Some(c) = &mut self.current {
            if c.owned && c.addr == addr {
                c.owned = false;
                return c.tid == tid;
            }
        }
        self.owner_filter & filter_bit(addr) != 0 && self.owner.remove(&addr) == Some(tid)
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

    /// The tracker as it was, with both maps updated on every call.
    #[derive(Default)]
    struct Reference {
        by_thread: HashMap<u32, u64>,
        owner: HashMap<u64, u32>,
    }

    impl Reference {
        fn allocated(&mut self, tid: u32, addr: u64) {
            if self.by_thread.len() >= MAX_TRACKED_THREADS && !self.by_thread.contains_key(&tid) {
                self.by_thread.clear();
                self.owner.clear();
            }
            if let Some(previous) = self.by_thread.insert(tid, addr) {
                if self.owner.get(&previous) == Some(&tid) {
                    self.owner.remove(&previous);
                }
            }
            self.owner.insert(addr, tid);
        }

        fn freed(&mut self, tid: u32, addr: u64) -> bool {
            self.owner.remove(&addr) == Some(tid)
        }
    }

    #[test]
    fn answers_as_maps_updated_on_every_call_do() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for threads in [1, 3, 5_000] {
            let (mut t, mut r) = (LatestAllocs::default(), Reference::default());
            let mut tid = 0;
            let mut temporary = 0;
            for _ in 0..200_000 {
                if next(8) == 0 {
                    tid = next(threads) as u32; // runs of one thread, as streams come
                }
                // Few addresses: duplicates, frees by other threads, reuse.
                let addr = 0x1000 + 16 * next(64);
                if next(2) == 0 {
                    t.allocated(tid, addr);
                    r.allocated(tid, addr);
                } else {
                    let (got, want) = (t.freed(tid, addr), r.freed(tid, addr));
                    assert_eq!(got, want, "thread {tid} frees {addr:#x}");
                    temporary += u64::from(got);
                }
            }
            assert!(
                temporary > 1_000,
                "{threads} threads: {temporary} temporary"
            );
        }
    }

    #[test]
    fn the_filter_lets_no_address_of_another_thread_through() {
        let mut t = LatestAllocs::default();
        for tid in 0..40u32 {
            t.allocated(tid, 0x1000 + u64::from(tid) * 16);
        }
        t.allocated(0, 0x10); // all 40 parked, 39 owned
        for tid in 1..40u32 {
            let addr = 0x1000 + u64::from(tid) * 16;
            assert_ne!(t.owner_filter & filter_bit(addr), 0, "{addr:#x}");
        }
        assert_eq!(t.owner.len(), 39);
        for tid in 1..30u32 {
            assert!(t.freed(tid, 0x1000 + u64::from(tid) * 16));
        }
        t.allocated(1, 0x20); // a switch with 10 left: rebuilt exactly
        assert_eq!(t.owner.len(), 11);
        let exact = t.owner.keys().fold(0, |f, &a| f | filter_bit(a));
        assert_eq!(t.owner_filter, exact);
        assert!(t.owner_filter.count_ones() <= 11);
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
