//! Timestamps.
//!
//! Recorded events carry *ticks* ([`ticks`]): on x86_64, when the kernel
//! itself keeps time with the TSC (its clocksource is `tsc`, so the counter
//! is invariant and synchronised across CPUs), the raw time-stamp counter,
//! which costs a third of a `clock_gettime` call (about 10 ns against 24 in
//! this project's VM, twice per malloc+free pair). Elsewhere ticks are
//! `CLOCK_MONOTONIC` nanoseconds. The sender turns ticks into nanoseconds
//! since the origin ([`TickConverter`]), off the program's threads.
//!
//! Everything else (module events, statistics) reads `CLOCK_MONOTONIC`
//! directly, through the vDSO.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ORIGIN_NS: AtomicU64 = AtomicU64::new(0);
static ORIGIN_TICKS: AtomicU64 = AtomicU64::new(0);
static USE_TSC: AtomicBool = AtomicBool::new(false);

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

/// The timestamp of a recorded event, in ticks (see the module docs).
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if USE_TSC.load(Ordering::Relaxed) {
        // SAFETY: RDTSC exists on every x86_64 CPU.
        return unsafe { std::arch::x86_64::_rdtsc() };
    }
    monotonic_ns()
}

/// Chooses the tick source, once at start. `try_tsc`: whether events are
/// frequent enough for the TSC to be worth the question to the kernel (a
/// file read: under the guard); if not, ticks are nanoseconds.
pub fn choose_ticks(try_tsc: bool) {
    let kernel_uses_tsc = try_tsc
        && std::fs::read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|name| name.trim_ascii() == b"tsc");
    USE_TSC.store(
        cfg!(target_arch = "x86_64") && kernel_uses_tsc,
        Ordering::Relaxed,
    );
}

/// Makes now the origin of [`since_start_ns`] and of tick conversion (at
/// start, and again in a forked child). Returns the origin in nanoseconds.
pub fn reset_origin() -> u64 {
    let ticks = ticks();
    let now = monotonic_ns();
    ORIGIN_TICKS.store(ticks, Ordering::Relaxed);
    ORIGIN_NS.store(now, Ordering::Relaxed);
    now
}

/// The origin set by [`reset_origin`].
pub fn origin_ns() -> u64 {
    ORIGIN_NS.load(Ordering::Relaxed)
}

/// Nanoseconds since the origin (0 for times before it was set).
pub fn since_start_ns() -> u64 {
    monotonic_ns().saturating_sub(ORIGIN_NS.load(Ordering::Relaxed))
}

/// Turns ticks into nanoseconds since the origin. The sender keeps one and
/// calls [`TickConverter::calibrate`] before each batch.
///
/// The rate is measured, not assumed: ticks and nanoseconds elapsed between
/// the origin and the latest calibration. An event is converted from that
/// latest pair backwards, so the rate's error (read jitter over the elapsed
/// time) only scales the event's age, which is short: a batch is drained
/// shortly after it was recorded.
#[derive(Debug)]
pub struct TickConverter {
    origin_ticks: u64,
    anchor_ticks: u64,
    /// Nanoseconds since the origin at `anchor_ticks`.
    anchor_ns: u64,
    ns_per_tick: f64,
}

impl TickConverter {
    /// A converter for the current origin.
    pub fn new() -> TickConverter {
        let mut c = TickConverter {
            origin_ticks: ORIGIN_TICKS.load(Ordering::Relaxed),
            anchor_ticks: ORIGIN_TICKS.load(Ordering::Relaxed),
            anchor_ns: 0,
            ns_per_tick: 1.0,
        };
        c.calibrate();
        c
    }

    /// Takes a fresh (ticks, nanoseconds) pair: events recorded before this
    /// call convert exactly as far as the clocks agree.
    pub fn calibrate(&mut self) {
        self.anchor_ticks = ticks();
        self.anchor_ns = since_start_ns();
        let elapsed_ticks = self.anchor_ticks.wrapping_sub(self.origin_ticks);
        if !USE_TSC.load(Ordering::Relaxed) {
            self.ns_per_tick = 1.0;
        } else if elapsed_ticks > 0 && elapsed_ticks < 1 << 62 && self.anchor_ns > 0 {
            self.ns_per_tick = self.anchor_ns as f64 / elapsed_ticks as f64;
        }
    }

    /// Nanoseconds since the origin at `ticks` (0 before the origin).
    pub fn since_start_ns(&self, ticks: u64) -> u64 {
        let back = self.anchor_ticks.wrapping_sub(ticks) as i64 as f64 * self.ns_per_tick;
        (self.anchor_ns as f64 - back).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_to_the_monotonic_clock() {
        choose_ticks(true);
        reset_origin();
        // (ticks, ns before, ns after): a pair read without being preempted
        // in between brackets the true time to a few microseconds.
        let mut pairs = Vec::new();
        while pairs.len() < 20 {
            let spin = monotonic_ns() + 200_000;
            while monotonic_ns() < spin {}
            let before = since_start_ns();
            let t = ticks();
            let after = since_start_ns();
            if after - before < 5_000 {
                pairs.push((t, before, after));
            }
        }
        let mut conv = TickConverter::new();
        conv.calibrate();
        for (t, before, after) in pairs {
            let got = conv.since_start_ns(t);
            // Within 20 µs of the bracket (the calibration's own reads jitter too).
            assert!(
                got + 20_000 >= before && got <= after + 20_000,
                "{got} outside {before}..{after}"
            );
        }
        assert_eq!(conv.since_start_ns(conv.origin_ticks.wrapping_sub(1000)), 0);
    }
}
