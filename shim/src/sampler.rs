//! Sampling: record about one allocation per `MEMSHIM_SAMPLE_BYTES` bytes.
//!
//! The bytes a thread allocates are treated as a Poisson process with one
//! sample point per `mean` bytes on average (as tcmalloc, jemalloc and
//! heapprofd do): the distance to the next point is drawn from an exponential
//! distribution, and an allocation is recorded when a point falls inside it.
//! An allocation of `size` bytes is thus recorded with probability
//! `1 - exp(-size / mean)`; one of at least `mean` bytes always is. The
//! collector scales each record by the inverse of that probability, which
//! makes its totals unbiased.
//!
//! The unsampled fast path is a thread-local subtraction and a branch.
//! Frees must not cost a queue push either: sampled addresses are kept in a
//! small lock-free set ([`SampledSet`]) and only their frees are recorded.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::thread_state;

static MEAN: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
static THREADS: AtomicU64 = AtomicU64::new(0);

/// Sets the mean bytes between samples (0: record every call) and, for
/// reproducible runs, the seed of the sampling (0: from the clock).
pub fn configure(mean: u64, seed: u64) {
    MEAN.store(mean, Ordering::Relaxed);
    SEED.store(seed, Ordering::Relaxed);
}

/// Whether sampling is on.
pub fn enabled() -> bool {
    MEAN.load(Ordering::Relaxed) != 0
}

/// Whether an allocation of `size` bytes is to be recorded.
#[inline(always)]
pub fn sample(size: usize) -> bool {
    let mean = MEAN.load(Ordering::Relaxed);
    if mean == 0 || size as u64 >= mean {
        return true;
    }
    // SAFETY: this thread's own state.
    let tls = unsafe { &mut *thread_state::sampler_tls() };
    tls.countdown -= size as i64;
    if tls.countdown > 0 && tls.rng != 0 {
        return false;
    }
    next_point(tls, mean)
}

/// A sample point fell in this allocation (or the thread is new): draw the
/// distance to the next one. Returns whether this allocation is sampled.
#[cold]
#[inline(never)]
fn next_point(tls: &mut thread_state::SamplerTls, mean: u64) -> bool {
    let sampled = tls.rng != 0;
    if !sampled {
        // A new thread: seed it (from MEMSHIM_SAMPLE_SEED and the order the
        // threads started sampling in, or from its address and the clock),
        // then place its first point (a fresh thread has no point at byte 0).
        let fixed = SEED.load(Ordering::Relaxed);
        let seed = if fixed != 0 {
            let n = THREADS.fetch_add(1, Ordering::Relaxed);
            fixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        } else {
            (tls as *mut _ as u64) ^ crate::clock::monotonic_ns().rotate_left(32)
        };
        tls.rng = seed | 1;
    }
    tls.countdown = exponential(&mut tls.rng, mean);
    sampled
}

/// An exponentially distributed distance with mean `mean`, at least 1.
fn exponential(rng: &mut u64, mean: u64) -> i64 {
    // xorshift64*: fast, good enough for sampling, no allocation.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let bits = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    let u = (bits as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
    ((-u.ln() * mean as f64) as i64).max(1)
}

const SET_SLOTS: usize = 1 << 20;
const MAX_PROBES: usize = 32;
const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;

/// The addresses of sampled blocks still live, so that only their frees are
/// recorded. Open addressing over atomics: an insert takes the first empty
/// or dead slot, a removal leaves a tombstone. Live addresses are unique, so
/// concurrent operations never race on one key. When the probe limit is hit
/// the set answers "maybe": the free is then recorded, and the collector
/// ignores frees of blocks it never saw, so the limit costs speed, never
/// correctness.
pub struct SampledSet {
    slots: *const AtomicU64,
}

// SAFETY: the slots are atomics in a mapping that lives as long as the process.
unsafe impl Sync for SampledSet {}
unsafe impl Send for SampledSet {}

/// What the set knows of an address.
#[derive(PartialEq, Eq)]
pub enum Membership {
    /// It was sampled (and is now removed).
    Sampled,
    /// It was not sampled.
    NotSampled,
    /// The set cannot tell (probe limit): treat as sampled.
    Unknown,
}

impl SampledSet {
    /// Maps the table (8 MiB of address space, touched as used). Runs under the guard.
    pub fn new() -> Option<SampledSet> {
        // SAFETY: an anonymous private mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SET_SLOTS * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then(|| SampledSet { slots: p.cast() })
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> &AtomicU64 {
        // SAFETY: callers mask `i` into the table.
        unsafe { &*self.slots.add(i & (SET_SLOTS - 1)) }
    }

    #[inline(always)]
    fn home(addr: u64) -> usize {
        (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize
    }

    /// Adds a sampled address; returns `false` if no slot was free nearby.
    pub fn insert(&self, addr: u64) -> bool {
        let home = Self::home(addr);
        for i in 0..MAX_PROBES {
            let cell = self.slot(home + i);
            let cur = cell.load(Ordering::Relaxed);
            if (cur == EMPTY || cur == TOMBSTONE)
                && cell
                    .compare_exchange(cur, addr, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Removes `addr` if present.
    #[inline(always)]
    pub fn remove(&self, addr: u64) -> Membership {
        let home = Self::home(addr);
        for i in 0..MAX_PROBES {
            let cell = self.slot(home + i);
            let cur = cell.load(Ordering::Acquire);
            if cur == addr {
                cell.store(TOMBSTONE, Ordering::Release);
                return Membership::Sampled;
            }
            if cur == EMPTY {
                return Membership::NotSampled;
            }
        }
        Membership::Unknown
    }
}
