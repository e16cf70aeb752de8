//! Capturing call stacks and interning them.
//!
//! A stack is identified by a 64-bit hash of its return addresses. The first
//! time this process sees a hash it queues the frames as a `StackDef`; later
//! events carry only the id. The "seen" set is a fixed, lock-free,
//! open-addressing table of hashes: a thread that finds no room simply sends
//! the definition again (the collector ignores duplicates), so the table never
//! blocks and never loses a stack.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use memshim_proto::paths::MAX_STACK_DEPTH;

use crate::errno;
use crate::first_touch::FirstTouch;

/// Most frames a stack can hold.
pub const MAX_FRAMES: usize = MAX_STACK_DEPTH as usize;

/// Frames captured for one call.
pub struct Frames {
    /// Return addresses, innermost first.
    pub ips: [u64; MAX_FRAMES],
    /// Each frame's stack pointer (its lowest address), or 0 where the
    /// unwinder cannot tell: frame `i` spans `sps[i]..sps[i + 1]`.
    pub sps: [u64; MAX_FRAMES],
    /// How many of `ips` are valid.
    pub len: usize,
}

static SELF_START: AtomicUsize = AtomicUsize::new(0);
static SELF_END: AtomicUsize = AtomicUsize::new(0);

/// Tells the unwinder where the shim's own code lives, so its frames are
/// dropped, and registers the loaded modules with the in-process unwinder.
///
/// Called once by the shim's initialisation, with the guard held.
pub fn set_own_range(start: usize, end: usize) {
    SELF_START.store(start, Ordering::Relaxed);
    SELF_END.store(end, Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    crate::unwind::init();
}

#[inline(always)]
fn is_own(ip: usize) -> bool {
    ip.wrapping_sub(SELF_START.load(Ordering::Relaxed))
        < SELF_END.load(Ordering::Relaxed) - SELF_START.load(Ordering::Relaxed)
}

/// Captures up to `depth` frames of the current thread, leaving out the shim's own.
///
/// The shim's frames (the hook and the unwinder on top, `main`'s wrapper at
/// the bottom) are dropped wherever they are. On x86-64 this uses the
/// in-process framehop unwinder ([`crate::unwind`]); elsewhere, or on a
/// thread that could not set it up, libgcc's.
///
/// Must run under the thread's guard: the unwinder may allocate on first use.
#[inline(always)]
pub fn capture(depth: usize, out: &mut Frames) {
    let depth = depth.min(MAX_FRAMES);
    out.len = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::unwind::capture(depth, out, |ip| is_own(ip as usize)) {
        return;
    }
    capture_libgcc(depth, out);
}

/// The fallback: libgcc's `_Unwind_Backtrace`, correct but slow.
#[inline(never)]
fn capture_libgcc(depth: usize, out: &mut Frames) {
    out.len = 0;
    // SAFETY: the unsynchronized variant is required inside malloc (the
    // synchronized one takes a lock that a forked child could inherit held);
    // the guard keeps this thread from re-entering it.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if is_own(ip) {
                return true;
            }
            if ip == 0 {
                return false;
            }
            out.ips[out.len] = ip as u64;
            out.sps[out.len] = 0;
            out.len += 1;
            out.len < depth
        });
    }
}

/// The id of a stack: a 64-bit hash of its frames, never 0.
#[inline(always)]
pub fn stack_id(frames: &[u64]) -> u64 {
    // FxHash-style multiply-rotate in four independent lanes (a single chain
    // of multiplies was a quarter of a deep capture's time), combined, then a
    // finalizer (from splitmix64) so that ids spread evenly over the
    // seen-set's slots.
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut lanes = [
        frames.len() as u64,
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
    ];
    let chunks = frames.chunks_exact(4);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &ip) in lanes.iter_mut().zip(chunk) {
            *lane = (lane.rotate_left(5) ^ ip).wrapping_mul(K);
        }
    }
    for (lane, &ip) in lanes.iter_mut().zip(rest) {
        *lane = (lane.rotate_left(5) ^ ip).wrapping_mul(K);
    }
    let mut h =
        lanes[0] ^ lanes[1].rotate_left(16) ^ lanes[2].rotate_left(32) ^ lanes[3].rotate_left(48);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h | 1
}

const SEEN_SLOTS: usize = 1 << 20;
const MAX_PROBES: usize = 64;
/// Words of the table's page bitmap: one bit per 4 KiB page of its 8 MiB.
const SEEN_PAGE_WORDS: usize = SEEN_SLOTS * 8 / 4096 / 64;
/// Entries of the recently-seen cache in front of the table (32 KiB).
const RECENT_SLOTS: usize = 1 << 12;

/// The set of stack ids already sent on this process's stream.
///
/// Every exact-mode event asks it, so in front of the table (8 MiB, where
/// each lookup of a program with many stacks missed every cache: three
/// quarters of `recorder::alloc`'s own time in cc1) sits a direct-mapped
/// cache of ids recently found or added: small enough to stay in the
/// nearest caches. An id in it is in the table, so a hit answers "sent".
pub struct SeenSet {
    slots: *const AtomicU64,
    /// The recently-seen cache: `RECENT_SLOTS` ids (0: empty), backed at once.
    recent: *const AtomicU64,
    /// Which pages were written: a new page is written before it is read.
    pages: FirstTouch<SEEN_PAGE_WORDS>,
}

// SAFETY: the slots are atomics in a mapping that lives as long as the process.
unsafe impl Sync for SeenSet {}
unsafe impl Send for SeenSet {}

impl SeenSet {
    /// Maps the table (8 MiB of address space; pages are touched as they
    /// fill) and the recently-seen cache after it (backed at once where the
    /// kernel can: every lookup reads it, see [`FirstTouch`] for why a page
    /// must not be read first).
    ///
    /// Must run under the thread's guard (it calls `mmap`).
    pub fn new() -> Option<SeenSet> {
        // SAFETY: an anonymous private mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (SEEN_SLOTS + RECENT_SLOTS) * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the cache follows the table inside the mapping.
        let recent = unsafe { p.cast::<AtomicU64>().add(SEEN_SLOTS) };
        // SAFETY: populates (zeroed, writable) pages of this mapping only.
        // Kernels before 5.14 refuse; their pages are touched as used.
        errno::preserved(|| unsafe {
            libc::madvise(recent.cast(), RECENT_SLOTS * 8, libc::MADV_POPULATE_WRITE)
        });
        Some(SeenSet {
            slots: p.cast(),
            recent,
            pages: FirstTouch::new(),
        })
    }

    /// Records `id`; returns `true` if it may not have been sent yet (the
    /// caller must then queue its definition).
    #[inline(always)]
    pub fn insert(&self, id: u64) -> bool {
        // SAFETY: masked into the cache.
        let recent = unsafe { &*self.recent.add(id as usize & (RECENT_SLOTS - 1)) };
        if recent.load(Ordering::Relaxed) == id {
            return false;
        }
        let new = self.insert_in_table(id);
        recent.store(id, Ordering::Relaxed);
        new
    }

    #[inline(always)]
    fn insert_in_table(&self, id: u64) -> bool {
        let mut slot = (id as usize) & (SEEN_SLOTS - 1);
        for _ in 0..MAX_PROBES {
            // SAFETY: `slot` is masked into the table.
            let cell = unsafe { &*self.slots.add(slot) };
            self.pages.before_read(cell, slot * 8);
            let cur = cell.load(Ordering::Relaxed);
            if cur == id {
                return false;
            }
            if cur == 0 {
                match cell.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return true,
                    Err(other) if other == id => return false,
                    Err(_) => {}
                }
            }
            slot = (slot + 1) & (SEEN_SLOTS - 1);
        }
        true
    }

    /// Empties the set: a forked child's stream starts knowing no stacks.
    ///
    /// `MADV_DONTNEED` on a private anonymous mapping drops its pages, which
    /// then read as zero: no copy of the parent's table is ever made.
    pub fn clear(&self) {
        // SAFETY: the range is exactly this table's part of the mapping.
        unsafe {
            libc::madvise(self.slots as *mut _, SEEN_SLOTS * 8, libc::MADV_DONTNEED);
        }
        self.pages.reset();
        for i in 0..RECENT_SLOTS {
            // SAFETY: `i` < RECENT_SLOTS, inside the cache.
            unsafe { &*self.recent.add(i) }.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::first_touch::thread_minor_faults;

    #[test]
    fn ids_are_new_once_until_the_set_is_cleared() {
        let seen = SeenSet::new().unwrap();
        let ids: Vec<u64> = (1..=1000u64).map(|i| stack_id(&[i, i * 7])).collect();
        assert!(ids.iter().all(|&id| seen.insert(id)));
        assert!(ids.iter().all(|&id| !seen.insert(id)));
        seen.clear();
        assert!(ids.iter().all(|&id| seen.insert(id)));
    }

    #[test]
    fn a_new_page_costs_one_fault_not_a_read_and_a_write_fault() {
        // Ids landing in 200 distinct pages (512 slots per page), inserted
        // after a clear (which drops the pages) so that every page is new.
        const PAGES: usize = 200;
        let seen = SeenSet::new().unwrap();
        seen.clear();
        let ids: Vec<u64> = (0..PAGES as u64).map(|p| p * 512 * 5 + 3).collect();
        let before = thread_minor_faults();
        assert!(ids.iter().all(|&id| seen.insert(id)));
        let faults = thread_minor_faults() - before;
        // A read first would map the zero page, and the claiming write would
        // then fault again: 2 per page.
        assert!(
            faults <= PAGES as i64 + 20,
            "{faults} faults for {PAGES} new pages"
        );
    }
}
