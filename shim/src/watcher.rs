//! The module watcher: a thread that notices `dlopen` and `dlclose`.
//!
//! Enumerating modules takes the dynamic loader's lock. A thread inside
//! `dlopen` holds that lock and may allocate, and with a full queue it waits
//! for the sender; so the sender must never take the lock itself. The watcher
//! does, on its own thread, and hands what it finds to the sender through the
//! channel's (unbounded, lock-free) queue of rare events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memshim_proto::Event;

use crate::clock;
use crate::modules::ModuleTracker;
use crate::queue;
use crate::sender;
use crate::wake::Doorbell;

/// How often the watcher looks without being asked: modules can also appear
/// without passing through the `dlopen` hook (glibc's own `dlopen` of NSS and
/// iconv modules). Requests ring the doorbell and are served at once.
const POLL: Duration = Duration::from_millis(10);

static SCAN_REQUESTED: AtomicU64 = AtomicU64::new(0);
static SCAN_DONE: AtomicU64 = AtomicU64::new(0);
/// Rung by `rescan` so that the watcher looks at once.
static DOORBELL: Doorbell = Doorbell::new();
/// Rung after each look, for the thread waiting in `rescan`.
static RESCANNED: Doorbell = Doorbell::new();

/// Starts the watcher with the modules the stream has announced so far.
pub fn start(tracker: ModuleTracker) -> bool {
    crate::threads::spawn_guarded(c"memshim-modules", Box::new(move || run(tracker)))
}

fn run(mut tracker: ModuleTracker) {
    while sender::is_live() {
        let seen = DOORBELL.seq();
        let request = SCAN_REQUESTED.load(Ordering::Acquire);
        announce(&mut tracker);
        if SCAN_DONE.swap(request, Ordering::AcqRel) != request {
            RESCANNED.ring();
        }
        DOORBELL.sleep_since(seen, POLL);
    }
}

fn announce(tracker: &mut ModuleTracker) {
    let Some(changes) = tracker.changes() else {
        return;
    };
    let Some(ch) = queue::channel() else { return };
    let ts = clock::since_start_ns();
    for base in changes.unloaded {
        ch.rare.push(Event::ModuleUnloaded { ts, base });
    }
    let loaded = !changes.loaded.is_empty();
    for module in changes.loaded {
        ch.rare.push(Event::Module(module));
    }
    if loaded {
        // A `dlopen`ed interpreter (Python embedded in a plug-in).
        crate::python::detect();
    }
}

/// Asks the watcher for a fresh look and waits for it, at most `timeout`
/// (the loader lock may be held for longer by a thread of the program).
pub fn rescan(timeout: Duration) {
    let request = SCAN_REQUESTED.fetch_add(1, Ordering::AcqRel) + 1;
    DOORBELL.ring();
    RESCANNED.wait_for(
        || SCAN_DONE.load(Ordering::Acquire) >= request || !sender::is_live(),
        timeout,
    );
}

/// Forgets the parent's requests in a forked child (the thread does not exist there).
pub fn reset_after_fork() {
    SCAN_REQUESTED.store(0, Ordering::Relaxed);
    SCAN_DONE.store(0, Ordering::Relaxed);
}
