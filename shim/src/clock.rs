//! Timestamps: `CLOCK_MONOTONIC` through the vDSO (no system call).

use std::sync::atomic::{AtomicU64, Ordering};

static ORIGIN_NS: AtomicU64 = AtomicU64::new(0);

/// Current `CLOCK_MONOTONIC` in nanoseconds.
#[inline(always)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Makes now the origin of [`since_start_ns`] (at start, and again in a forked child).
pub fn reset_origin() -> u64 {
    let now = monotonic_ns();
    ORIGIN_NS.store(now, Ordering::Relaxed);
    now
}

/// The origin set by [`reset_origin`].
pub fn origin_ns() -> u64 {
    ORIGIN_NS.load(Ordering::Relaxed)
}

/// Nanoseconds since the origin (0 for events recorded before it was set).
#[inline(always)]
pub fn since_start_ns() -> u64 {
    monotonic_ns().saturating_sub(ORIGIN_NS.load(Ordering::Relaxed))
}
