//! Module announcements: which objects are loaded, told to the collector in time.
//!
//! The stream opens with every object loaded at start-up (`sender::start`).
//! Later changes are announced by whichever thread notices them, before
//! anything that needs them leaves the process:
//!
//! * a stack recorded for the first time ([`before_new_stack`]): new code ran,
//!   perhaps from an object loaded since (a `dlopen`, or glibc's own loading
//!   of NSS and iconv modules, which no hook sees);
//! * `dlclose`, before the object goes, so that one loaded and closed between
//!   two recorded stacks is still named;
//! * `exit` and `exec`, for a last look.
//!
//! Noticing costs one step of `dl_iterate_phdr` (glibc's counts of objects
//! added and removed); only a change costs a scan. This is safe inside the
//! hooks: `dl_iterate_phdr` takes only the loader's write lock, which glibc
//! holds for short list updates and never while library code runs (unlike
//! the lock of `dlopen` and `dlsym`), and a thread inside `dlopen` that waits
//! for queue room is released by the sender, which takes no loader lock.
//! The one exception is Python detection, which needs `dlsym`: it runs on a
//! thread of its own, started only when a `libpython` appears.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memshim_proto::Event;

use crate::modules::ModuleTracker;
use crate::{clock, python, queue, threads};

/// What the stream has announced; `BUSY` says which thread may touch it.
struct Announced(UnsafeCell<Option<ModuleTracker>>);

// SAFETY: the tracker is only touched by the thread that set `BUSY`.
unsafe impl Sync for Announced {}

static ANNOUNCED: Announced = Announced(UnsafeCell::new(None));
/// Set while a thread compares or replaces the tracker. A flag tried, never
/// waited on by the hooks: a thread that finds it set leaves the look to
/// the thread that holds it.
static BUSY: AtomicBool = AtomicBool::new(false);

/// How long a look that must happen waits for one under way elsewhere. A
/// bound, not a wait that matters: looks take microseconds, but the holder
/// may be this very thread, interrupted by a signal whose handler exits.
const WAIT_FOR_OTHER_LOOK: Duration = Duration::from_millis(100);

/// Starts a stream's announcements from `tracker`, which holds what the
/// stream opened with. Runs under the guard.
pub fn begin(tracker: ModuleTracker) {
    with_tracker(Some(WAIT_FOR_OTHER_LOOK), |slot| *slot = Some(tracker));
}

/// Before the first sight of a stack is queued: announces what changed, if
/// no other thread is already looking. Runs under the guard, may allocate.
pub fn before_new_stack() {
    with_tracker(None, announce);
}

/// A look that must happen (`dlclose`, `exit`, `exec`): waits for a look
/// already under way on another thread, then looks itself.
pub fn now() {
    with_tracker(Some(WAIT_FOR_OTHER_LOOK), announce);
}

/// In a forked child: the threads that could have held the flag are gone,
/// and the child's stream will open with its own module map. The parent's
/// tracker is leaked, not dropped: a thread may have been changing it at the
/// fork, and dropping a half-updated set could crash the child.
pub fn reset_after_fork() {
    BUSY.store(false, Ordering::Release);
    with_tracker(None, |tracker| std::mem::forget(tracker.take()));
}

/// Runs `f` on the tracker once this thread holds `BUSY`: at once or never
/// if `wait` is `None`, else within that time.
fn with_tracker(wait: Option<Duration>, f: impl FnOnce(&mut Option<ModuleTracker>)) {
    let mut deadline = None;
    while BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        let Some(wait) = wait else { return };
        let now = clock::monotonic_ns();
        let deadline = *deadline.get_or_insert(now + wait.as_nanos() as u64);
        if now > deadline {
            return;
        }
        // The holder is scanning (microseconds) or waiting for queue room,
        // which the sender makes: it lets go soon.
        std::thread::yield_now();
    }
    // SAFETY: BUSY is ours until the store below.
    f(unsafe { &mut *ANNOUNCED.0.get() });
    BUSY.store(false, Ordering::Release);
}

fn announce(tracker: &mut Option<ModuleTracker>) {
    let Some(tracker) = tracker else { return };
    let Some(changes) = tracker.changes() else {
        return;
    };
    let Some(ch) = queue::channel() else { return };
    let ts = clock::since_start_ns();
    for base in changes.unloaded {
        ch.rare.push(Event::ModuleUnloaded { ts, base });
    }
    let mut python_loaded = false;
    for module in changes.loaded {
        python_loaded |= module.path.contains("libpython");
        ch.rare.push(Event::Module(module));
    }
    if python_loaded && !python::is_active() {
        // An interpreter embedded in a plug-in. Finding it takes `dlsym`,
        // whose lock `dlopen` holds while library constructors run: never
        // inside a hook, so on a short-lived thread of its own.
        threads::spawn_guarded(c"memshim-python", Box::new(python::detect));
    }
}
