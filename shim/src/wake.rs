//! Waking the shim's own threads without making them spin or oversleep.
//!
//! The sender and the watcher sleep between rounds; `exit` and `exec` must not
//! wait out those sleeps. A futex word per sleeper lets the waker cut a sleep
//! short (std has no timed wait that is both lock-free and fork-safe; a
//! futex holds no lock a fork could orphan).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A sleeper that others can wake early.
pub struct Doorbell(AtomicU32);

impl Doorbell {
    /// A doorbell nobody has rung.
    pub const fn new() -> Doorbell {
        Doorbell(AtomicU32::new(0))
    }

    /// Sleeps up to `timeout`, or until [`Doorbell::ring`] is called.
    pub fn sleep(&self, timeout: Duration) {
        let seen = self.0.load(Ordering::Acquire);
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a futex wait on our own aligned word with a valid timeout;
        // it returns at once if the word already changed.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &ts as *const libc::timespec,
            );
        }
    }

    /// Wakes the sleeper, if any.
    pub fn ring(&self) {
        self.0.fetch_add(1, Ordering::Release);
        // SAFETY: a futex wake on our own aligned word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
    }
}
