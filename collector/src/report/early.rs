//! Reports on processes made as their streams close, ahead of the report
//! on the whole tree (`memcollect run`).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::build::{draft_for, finish_for, selects, ReportOptions};
use super::ProcessReport;
use crate::registry::SessionHandle;
use crate::state::{Exit, Session};
use crate::symbolize::{SymbolCache, Symbolizer};

/// The reports of the processes that ended while others still ran, made
/// ahead of the whole report.
///
/// `memcollect run` reports once the whole process tree has ended; a
/// session's part of the report (its figures, rankings and leak classes,
/// symbolized) is final once its stream closes, unless the reaper refines
/// its exit afterwards. A thread of its own makes each as its stream
/// closes, which takes that work off the report's critical path: gcc's cc1
/// is reported on while the assembler runs. Two threads make them (the
/// machines this runs on have at least two cores): the small reports of the
/// processes that end last (the assembler, the driver) are made beside the
/// large one still under way, instead of after it.
pub struct EarlyReports {
    options: ReportOptions,
    cache: Arc<SymbolCache>,
    /// By session (the address of its handle, which the registry keeps):
    /// the exit the report saw, and the report.
    reports: Mutex<HashMap<usize, (Exit, ProcessReport)>>,
    /// Closed sessions for the worker; `None` once [`EarlyReports::wait`]ed.
    queue: Mutex<Option<mpsc::Sender<Arc<SessionHandle>>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// Threads that make the reports.
const WORKERS: usize = 2;

impl EarlyReports {
    /// Starts the workers that make reports with `options`, symbolized
    /// through `cache`. Without a worker (none could start), every report
    /// is made at the end as usual.
    pub fn start(options: ReportOptions, cache: Arc<SymbolCache>) -> Arc<Self> {
        let early = Arc::new(EarlyReports {
            options,
            cache,
            reports: Mutex::default(),
            queue: Mutex::new(None),
            workers: Mutex::default(),
        });
        let (sender, receiver) = mpsc::channel::<Arc<SessionHandle>>();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WORKERS {
            let (early_for_worker, receiver) = (Arc::clone(&early), Arc::clone(&receiver));
            let worker = std::thread::Builder::new()
                .name("memcollect-early".into())
                .spawn(move || loop {
                    // The lock is held only to take the next session.
                    let next = lock(&receiver).recv();
                    let Ok(handle) = next else { return };
                    early_for_worker.make(&handle);
                });
            if let Ok(worker) = worker {
                lock(&early.workers).push(worker);
            }
        }
        if !lock(&early.workers).is_empty() {
            *lock(&early.queue) = Some(sender);
        }
        early
    }

    /// Queues the closed session `handle` for its report (the registry's
    /// close hook: it must not wait).
    pub fn queue(&self, handle: &Arc<SessionHandle>) {
        if let Some(queue) = lock(&self.queue).as_ref() {
            // A worker that died only means the report is made at the end.
            let _ = queue.send(Arc::clone(handle));
        }
    }

    /// Waits until every queued session has its report; later ones are not
    /// made ahead.
    pub fn wait(&self) {
        drop(lock(&self.queue).take());
        let workers = std::mem::take(&mut *lock(&self.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }

    /// Reports on the closed session `handle`, if `options` selects it.
    fn make(&self, handle: &Arc<SessionHandle>) {
        let session = handle.lock();
        if !selects(&self.options, &session) {
            return;
        }
        let exit = session.exit();
        let draft = draft_for(&session, &self.options, 0);
        drop(session);
        let report = finish_for(draft, &mut Symbolizer::new(&self.cache), &self.options);
        lock(&self.reports).insert(Arc::as_ptr(handle) as usize, (exit, report));
    }

    /// How many reports were made ahead and not taken yet.
    #[cfg(test)]
    pub(crate) fn made(&self) -> usize {
        lock(&self.reports).len()
    }

    /// The report on `handle`'s session, if it was made with `options` and
    /// the session's exit has not changed since.
    pub(super) fn take(
        &self,
        handle: &Arc<SessionHandle>,
        session: &Session,
        options: &ReportOptions,
    ) -> Option<ProcessReport> {
        if *options != self.options {
            return None;
        }
        let (exit, report) = lock(&self.reports).remove(&(Arc::as_ptr(handle) as usize))?;
        (exit == session.exit()).then_some(report)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
