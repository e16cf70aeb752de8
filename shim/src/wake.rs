//! Waking the shim's own threads without making them spin or oversleep.
//!
//! The sender sleeps between rounds, and producers may sleep until it has
//! made room; `exit` and `exec` must not wait out those sleeps. A futex word per sleeper lets the waker cut a sleep
//! short (std has no timed wait that is both lock-free and fork-safe; a
//! futex holds no lock a fork could orphan).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A sleeper that others can wake early.
pub struct Doorbell {
    /// The ring count: the futex word.
    rings: AtomicU32,
    /// Threads in (or about to enter) a futex wait: a ring with nobody
    /// asleep costs two atomic operations, no system call.
    sleepers: AtomicU32,
}

impl Doorbell {
    /// A doorbell nobody has rung.
    pub const fn new() -> Doorbell {
        Doorbell {
            rings: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// The ring count now. Read it before testing whether there is work,
    /// then sleep with [`Doorbell::sleep_since`]: a ring in between is never
    /// missed.
    pub fn seq(&self) -> u32 {
        self.rings.load(Ordering::Acquire)
    }

    /// Sleeps up to `timeout`, unless the doorbell was rung since `seen`
    /// was read (then returns at once).
    pub fn sleep_since(&self, seen: u32, timeout: Duration) {
        self.wait(seen, timeout);
    }

    /// Waits until `done()` holds, or `timeout` passed; rings in between
    /// wake it at once (the ring count is read before each test, so a ring
    /// right after a failed test is never missed). Returns whether `done()`
    /// held. Polls `done()` at least every millisecond, for conditions that
    /// change without a ring (a peer that died).
    pub fn wait_for(&self, mut done: impl FnMut() -> bool, timeout: Duration) -> bool {
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let deadline = crate::clock::monotonic_ns().saturating_add(timeout_ns);
        loop {
            let seen = self.rings.load(Ordering::Acquire);
            if done() {
                return true;
            }
            let now = crate::clock::monotonic_ns();
            if now >= deadline {
                return false;
            }
            self.wait(seen, Duration::from_nanos((deadline - now).min(1_000_000)));
        }
    }

    fn wait(&self, seen: u32, timeout: Duration) {
        // SeqCst with the ringer's two steps: either it sees this sleeper, or
        // its ring came first and the futex wait returns at once.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a futex wait on our own aligned word with a valid timeout;
        // it returns at once if the word already changed.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.rings.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &ts as *const libc::timespec,
            );
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a thread sleeps on this doorbell (or is about to). A plain
    /// read of a word written only around sleeps: cheap on a hot path.
    pub fn has_sleeper(&self) -> bool {
        self.sleepers.load(Ordering::Relaxed) != 0
    }

    /// Wakes the sleeper, if any.
    pub fn ring(&self) {
        self.wake(1);
    }

    /// Wakes every thread waiting on this doorbell.
    pub fn ring_all(&self) {
        self.wake(i32::MAX);
    }

    fn wake(&self, count: i32) {
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        // SAFETY: a futex wake on our own aligned word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.rings.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                count,
            );
        }
    }
}
