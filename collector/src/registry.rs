//! Every session the collector knows, and the hand-over of state from a
//! forking parent to its child.
//!
//! Lock order: a session's lock may be taken before `forks`, and `forks`
//! before `inner`; `inner` is never held while taking another lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use memshim_proto::Hello;

use crate::state::{Exit, ForkSnapshot, Session};

/// How long a forked child's stream waits for its parent's fork snapshot.
pub const DEFAULT_FORK_WAIT: Duration = Duration::from_secs(5);
/// Unclaimed fork snapshots are dropped after this long.
const SNAPSHOT_TTL: Duration = Duration::from_secs(30);
/// At most this many unclaimed fork snapshots are kept; the oldest go first.
const MAX_SNAPSHOTS: usize = 256;
/// A cut stream followed this soon by a fresh image of the same pid was an `exec`.
const EXEC_GAP_NS: u64 = 5_000_000_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One session, shared between its connection and the reporters.
#[derive(Debug)]
pub struct SessionHandle {
    session: Mutex<Session>,
    closed: AtomicBool,
}

impl SessionHandle {
    /// Locks the session.
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }

    /// Whether its stream is over.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct PendingFork {
    parent_pid: u32,
    offered: Instant,
    snapshot: ForkSnapshot,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: Vec<Arc<SessionHandle>>,
    latest: HashMap<u32, Arc<SessionHandle>>,
}

/// What runs on a session when its stream closes (see [`Registry::on_close`]).
pub type CloseHook = Box<dyn Fn(&Arc<SessionHandle>) + Send + Sync>;

/// All sessions, in the order their streams opened.
pub struct Registry {
    inner: Mutex<Inner>,
    forks: Mutex<HashMap<u32, PendingFork>>,
    fork_cv: Condvar,
    fork_wait: Duration,
    on_close: OnceLock<CloseHook>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("inner", &self.inner)
            .field("forks", &self.forks)
            .field("fork_wait", &self.fork_wait)
            .field("on_close", &self.on_close.get().is_some())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_fork_wait(DEFAULT_FORK_WAIT)
    }
}

impl Registry {
    /// A registry whose forked children wait at most `fork_wait` for their parent's state.
    pub fn with_fork_wait(fork_wait: Duration) -> Self {
        Registry {
            inner: Mutex::default(),
            forks: Mutex::default(),
            fork_cv: Condvar::new(),
            fork_wait,
            on_close: OnceLock::new(),
        }
    }

    /// Runs `hook` on every session whose stream closes from now on, on the
    /// thread that closes it (a stream's connection thread: the hook must
    /// not block). Only the first hook set is kept.
    pub fn on_close(&self, hook: CloseHook) {
        let _ = self.on_close.set(hook);
    }

    /// Opens the session of a stream that said `hello`.
    ///
    /// A forked child waits (bounded) for its parent's snapshot. A fresh image
    /// of a pid whose previous image is still open or was just cut marks that
    /// one as replaced by `exec`.
    pub fn open(&self, hello: Hello) -> Arc<SessionHandle> {
        let session = match hello.forked_from {
            Some(parent) => match self.claim_fork(hello.pid, parent) {
                Some(snapshot) => Session::forked(hello, snapshot),
                None => Session::new(hello),
            },
            None => {
                self.discard_fork(hello.pid);
                if let Some(prev) = self.latest(hello.pid) {
                    mark_exec_if_replaced(&mut prev.lock(), &hello);
                }
                Session::new(hello)
            }
        };
        let pid = session.hello().pid;
        let handle = Arc::new(SessionHandle {
            session: Mutex::new(session),
            closed: AtomicBool::new(false),
        });
        let mut inner = lock(&self.inner);
        inner.sessions.push(Arc::clone(&handle));
        inner.latest.insert(pid, Arc::clone(&handle));
        handle
    }

    /// Marks a session's stream as over (end of stream or error), then
    /// runs the [`Registry::on_close`] hook on it.
    pub fn close(&self, handle: &Arc<SessionHandle>) {
        handle.lock().close();
        handle.closed.store(true, Ordering::Release);
        {
            // Wake children waiting for this parent: it will fork no more.
            let _forks = lock(&self.forks);
            self.fork_cv.notify_all();
        }
        if let Some(hook) = self.on_close.get() {
            hook(handle);
        }
    }

    /// Offers the state of `parent_pid` at its fork of `child_pid` to the child's stream.
    pub fn offer_fork(&self, parent_pid: u32, child_pid: u32, snapshot: ForkSnapshot) {
        let mut forks = lock(&self.forks);
        let now = Instant::now();
        forks.retain(|_, p| now.duration_since(p.offered) < SNAPSHOT_TTL);
        while forks.len() >= MAX_SNAPSHOTS {
            let oldest = forks
                .iter()
                .min_by_key(|(_, p)| p.offered)
                .map(|(&pid, _)| pid);
            match oldest {
                Some(pid) => forks.remove(&pid),
                None => break,
            };
        }
        forks.insert(
            child_pid,
            PendingFork {
                parent_pid,
                offered: now,
                snapshot,
            },
        );
        self.fork_cv.notify_all();
    }

    /// Number of fork snapshots waiting for their child.
    pub fn pending_forks(&self) -> usize {
        lock(&self.forks).len()
    }

    fn claim_fork(&self, child_pid: u32, parent_pid: u32) -> Option<ForkSnapshot> {
        let deadline = Instant::now() + self.fork_wait;
        let mut forks = lock(&self.forks);
        loop {
            if forks
                .get(&child_pid)
                .is_some_and(|p| p.parent_pid == parent_pid)
            {
                return forks.remove(&child_pid).map(|p| p.snapshot);
            }
            let parent_closed = self.latest(parent_pid).is_some_and(|h| h.is_closed());
            let now = Instant::now();
            if parent_closed || now >= deadline {
                return None;
            }
            forks = self
                .fork_cv
                .wait_timeout(forks, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn discard_fork(&self, pid: u32) {
        lock(&self.forks).remove(&pid);
    }

    fn latest(&self, pid: u32) -> Option<Arc<SessionHandle>> {
        lock(&self.inner).latest.get(&pid).cloned()
    }

    /// Every session, in the order their streams opened.
    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        lock(&self.inner).sessions.clone()
    }

    /// Uses the status `waitpid` gave for `pid` when its last stream could not tell.
    pub fn refine_exit(&self, pid: u32, exit: Exit) {
        if let Some(handle) = self.latest(pid) {
            let mut s = handle.lock();
            if matches!(s.exit(), Exit::Cut | Exit::Exited) {
                s.set_exit(exit);
            }
        }
    }

    /// Closes every session whose stream is still open (their data is kept, as cut).
    pub fn cut_open_sessions(&self) {
        for handle in self.sessions() {
            if !handle.is_closed() {
                self.close(&handle);
            }
        }
    }
}

fn mark_exec_if_replaced(prev: &mut Session, hello: &Hello) {
    let prev_end_ns = prev.hello().start_unix_ns.saturating_add(prev.last_ts());
    let replaced = match prev.exit() {
        Exit::Running => true,
        Exit::Cut => hello.start_unix_ns.saturating_sub(prev_end_ns) < EXEC_GAP_NS,
        _ => false,
    };
    if replaced {
        prev.set_exit(Exit::Exec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{end, hello, malloc};
    use memshim_proto::EndReason;

    #[test]
    fn a_fresh_image_of_an_open_or_just_cut_pid_marks_an_exec() {
        let r = Registry::with_fork_wait(Duration::from_millis(10));
        let first = r.open(hello(100, None));
        first.lock().apply(malloc(1, 0x10, 8, 1)).unwrap();
        let second = r.open(hello(100, None));
        assert_eq!(first.lock().exit(), Exit::Exec);
        r.close(&first);
        assert_eq!(
            first.lock().exit(),
            Exit::Exec,
            "a late EOF does not make it cut"
        );
        r.close(&second);
        assert_eq!(second.lock().exit(), Exit::Cut);
        let third = r.open(hello(100, None));
        assert_eq!(second.lock().exit(), Exit::Exec);
        third.lock().apply(end(5, EndReason::Exit(0))).unwrap();
        r.close(&third);
        let fourth = r.open(hello(100, None));
        assert_eq!(
            third.lock().exit(),
            Exit::Code(0),
            "an orderly exit stays an exit"
        );
        assert_eq!(r.sessions().len(), 4);
        drop(fourth);
    }

    #[test]
    fn unclaimed_snapshots_are_dropped_and_waits_are_bounded() {
        let r = Registry::with_fork_wait(Duration::from_millis(50));
        let parent = r.open(hello(1, None));
        let snapshot = parent.lock().fork_snapshot();
        r.offer_fork(1, 2, snapshot.clone());
        // The child exec'd before its shim spoke: its fresh image discards the snapshot.
        r.open(hello(2, None));
        assert_eq!(r.pending_forks(), 0);
        // A child whose parent never forks (as far as we know) waits only so long.
        let started = Instant::now();
        let orphan = r.open(hello(3, Some(1)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(orphan.lock().heap().live_bytes(), 0);
        // Once the parent's stream is closed, children stop waiting at once.
        r.close(&parent);
        let started = Instant::now();
        r.open(hello(4, Some(1)));
        assert!(started.elapsed() < Duration::from_millis(50));
        for pid in 10..10 + 2 * MAX_SNAPSHOTS as u32 {
            r.offer_fork(1, pid, snapshot.clone());
        }
        assert_eq!(r.pending_forks(), MAX_SNAPSHOTS);
    }
}
