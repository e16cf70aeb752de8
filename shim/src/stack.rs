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

/// Slots of the table's generations, each eight times the one before.
///
/// A hash table spreads its ids over all its pages, and each page a process
/// touches costs a page fault (a few microseconds, with the zeroing and the
/// memory cgroup's accounting). One table of 8 MiB made a process with 10,000
/// stacks (gcc's `cc1`) touch nearly all of its 2,048 pages: 2,000 faults,
/// 9% of its run time under the shim. Generations make the pages touched
/// grow with the number of stacks: a process moves on to the next one when
/// the current one is half full (8 pages hold 2,048 stacks, 72 pages 18,000).
const GENERATIONS: [usize; 4] = [1 << 12, 1 << 15, 1 << 18, 1 << 21];
/// Slots of all generations, laid out one after the other.
const SEEN_SLOTS: usize = GENERATIONS[0] + GENERATIONS[1] + GENERATIONS[2] + GENERATIONS[3];
const MAX_PROBES: usize = 64;
/// Words of the table's page bitmap: one bit per 4 KiB page.
const SEEN_PAGE_WORDS: usize = (SEEN_SLOTS * 8 / 4096).div_ceil(64);
/// Entries of the recently-seen cache in front of the table (32 KiB).
const RECENT_SLOTS: usize = 1 << 12;

/// The first slot of generation `gen`.
const fn generation_start(gen: usize) -> usize {
    let mut start = 0;
    let mut g = 0;
    while g < gen {
        start += GENERATIONS[g];
        g += 1;
    }
    start
}

/// What probing one generation for an id found.
enum Probe {
    /// The id is there.
    Present,
    /// The id was absent and this call claimed a slot for it.
    Claimed,
    /// The id is absent (when only looking), or absent with no free slot
    /// within [`MAX_PROBES`].
    Absent,
}

/// The set of stack ids already sent on this process's stream.
///
/// Every exact-mode event asks it, so in front of the table (where each
/// lookup of a program with many stacks missed every cache: three quarters
/// of `recorder::alloc`'s own time in cc1) sits a direct-mapped cache of ids
/// recently found or added: small enough to stay in the nearest caches. An
/// id in it is in the table, so a hit answers "sent".
///
/// The table is open-addressed, in [`GENERATIONS`]: ids are added to the
/// current generation; one found only in an older generation is copied into
/// the current one, so that it is found with one probe sequence next time.
pub struct SeenSet {
    slots: *const AtomicU64,
    /// The recently-seen cache: `RECENT_SLOTS` ids (0: empty), backed at once.
    recent: *const AtomicU64,
    /// Which pages were written: a new page is written before it is read.
    pages: FirstTouch<SEEN_PAGE_WORDS>,
    /// The generation ids are added to.
    current: AtomicUsize,
    /// Slots claimed in the current generation (approximately: a thread
    /// that read the generation just before it changed counts its claim in
    /// the next one).
    filled: AtomicUsize,
}

// SAFETY: the slots are atomics in a mapping that lives as long as the process.
unsafe impl Sync for SeenSet {}
unsafe impl Send for SeenSet {}

impl SeenSet {
    /// Maps the table (18 MiB of address space; pages are touched as they
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
            current: AtomicUsize::new(0),
            filled: AtomicUsize::new(0),
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
        let gen = self.current.load(Ordering::Relaxed);
        if let Probe::Present = self.probe(gen, id, false) {
            return false;
        }
        self.insert_slow(gen, id)
    }

    /// `id` is not in generation `gen`: an older one may hold it, else it
    /// is new. Either way it is added to `gen`.
    #[cold]
    #[inline(never)]
    fn insert_slow(&self, gen: usize, id: u64) -> bool {
        let older = (0..gen).any(|g| matches!(self.probe(g, id, false), Probe::Present));
        match self.probe(gen, id, true) {
            Probe::Present => false,
            Probe::Claimed => {
                self.count_claim(gen);
                !older
            }
            // No room: a new id is sent again later (the collector ignores
            // repeated definitions).
            Probe::Absent => !older,
        }
    }

    /// Counts a claimed slot of `gen`; moves on to the next generation once
    /// `gen` is half full.
    fn count_claim(&self, gen: usize) {
        let filled = self.filled.fetch_add(1, Ordering::Relaxed) + 1;
        if filled >= GENERATIONS[gen] / 2
            && gen + 1 < GENERATIONS.len()
            && self
                .current
                .compare_exchange(gen, gen + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.filled.store(0, Ordering::Relaxed);
        }
    }

    /// Looks for `id` in generation `gen`; with `claim`, takes the first
    /// free slot for it if it is absent.
    #[inline(always)]
    fn probe(&self, gen: usize, id: u64, claim: bool) -> Probe {
        let start = generation_start(gen);
        let mask = GENERATIONS[gen] - 1;
        let mut slot = id as usize & mask;
        for _ in 0..MAX_PROBES {
            let index = start + slot;
            // SAFETY: `index` is inside generation `gen`, inside the table.
            let cell = unsafe { &*self.slots.add(index) };
            self.pages.before_read(cell, index * 8);
            let cur = cell.load(Ordering::Relaxed);
            if cur == id {
                return Probe::Present;
            }
            if cur == 0 {
                if !claim {
                    return Probe::Absent;
                }
                match cell.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return Probe::Claimed,
                    Err(other) if other == id => return Probe::Present,
                    Err(_) => {}
                }
            }
            slot = (slot + 1) & mask;
        }
        Probe::Absent
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
        self.current.store(0, Ordering::Relaxed);
        self.filled.store(0, Ordering::Relaxed);
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

    /// `n` distinct ids.
    fn ids(n: u64) -> Vec<u64> {
        (1..=n).map(|i| stack_id(&[i, i * 7])).collect()
    }

    #[test]
    fn ids_are_new_once_until_the_set_is_cleared() {
        // Enough ids to fill the first two generations and start the third:
        // ids of older generations must still be found.
        let seen = SeenSet::new().unwrap();
        let ids = ids(30_000);
        assert!(ids.iter().all(|&id| seen.insert(id)));
        assert_eq!(seen.current.load(Ordering::Relaxed), 2);
        assert!(ids.iter().all(|&id| !seen.insert(id)));
        seen.clear();
        assert_eq!(seen.current.load(Ordering::Relaxed), 0);
        assert!(ids.iter().all(|&id| seen.insert(id)));
    }

    #[test]
    fn an_id_found_in_an_older_generation_moves_to_the_current_one() {
        let seen = SeenSet::new().unwrap();
        let first = ids(1)[0];
        assert!(seen.insert(first));
        for id in ids(3_000).into_iter().skip(1) {
            seen.insert(id);
        }
        assert_eq!(seen.current.load(Ordering::Relaxed), 1);
        assert!(matches!(seen.probe(1, first, false), Probe::Absent));
        assert!(!seen.insert_in_table(first));
        assert!(matches!(seen.probe(1, first, false), Probe::Present));
    }

    #[test]
    fn pages_touched_grow_with_the_number_of_stacks() {
        // 1,000 stacks fit the first generation: 8 pages. Spread over one
        // large table they would touch most of a thousand pages.
        let seen = SeenSet::new().unwrap();
        seen.clear();
        let ids = ids(1_000);
        let before = thread_minor_faults();
        assert!(ids.iter().all(|&id| seen.insert(id)));
        let faults = thread_minor_faults() - before;
        assert!(faults <= 8 + 20, "{faults} faults for 1,000 stacks");
    }

    #[test]
    fn a_new_page_costs_one_fault_not_a_read_and_a_write_fault() {
        // Fill the first two generations, then add ids that land in 200
        // distinct pages (512 slots per page) of the third, all new.
        const PAGES: usize = 200;
        let seen = SeenSet::new().unwrap();
        seen.clear();
        let mut filler = ids(20_000).into_iter();
        while seen.current.load(Ordering::Relaxed) < 2 {
            seen.insert(filler.next().unwrap());
        }
        let ids: Vec<u64> = (0..PAGES as u64).map(|p| p * 512 + 3 + (1 << 40)).collect();
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
