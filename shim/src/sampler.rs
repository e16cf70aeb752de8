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
//! The unsampled fast path ([`skip`]) is a thread-local subtraction and a
//! branch. Frees must not cost a queue push either: sampled addresses are
//! kept in a small lock-free set ([`crate::sampled_set`]) and only their
//! frees are recorded.

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

/// Places no sample point ever again, so that [`skip`] lets every call
/// through (after a thread's first call, which draws its countdown): for
/// when nothing is recorded any more.
pub fn sample_nothing() {
    MEAN.store(u64::MAX, Ordering::Relaxed);
}

/// Whether sampling is on (also once [`sample_nothing`] was called: then no
/// call is recorded at all).
pub fn enabled() -> bool {
    MEAN.load(Ordering::Relaxed) != 0
}

/// The hooks' fast path: true when an allocation of `size` bytes is surely
/// not sampled, having counted it towards the next sample point. False
/// (counting nothing) when [`sample`] must decide: in exact mode, before
/// the thread's first point is drawn, for large blocks, and when a sample
/// point falls inside this allocation.
#[inline(always)]
pub fn skip(size: usize) -> bool {
    // SAFETY: this thread's own state.
    let tls = unsafe { &mut *thread_state::sampler_tls() };
    // `countdown` is positive only once sampling is on and the thread seeded.
    if (size as u64) < MEAN.load(Ordering::Relaxed) && tls.countdown > size as i64 {
        tls.countdown -= size as i64;
        return true;
    }
    false
}

/// Whether an allocation of `size` bytes is to be recorded.
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
    ((-libm::log(u) * mean as f64) as i64).max(1)
}
