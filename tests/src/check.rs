//! The exact comparisons: memshim's report and valgrind's summaries against
//! the programs' own tallies, each minus its baseline program.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::programs::{program, scratch};
use crate::report::{memcollect_run, MemshimRun, ProcessReport, Totals};
use crate::tally::Tally;
use crate::valgrind::{valgrind_run, VgStats};

/// The empty C program: what the C runtime allocates by itself.
pub const BASE_C: &str = "empty.c";
/// The empty C++ program (libstdc++'s emergency pool).
pub const BASE_CPP: &str = "empty.cpp";
/// The empty 4-thread program (glibc allocates each thread's DTV).
pub const BASE_THREADS: &str = "empty_threads.c";
/// The empty Rust program.
pub const BASE_RUST: &str = "empty.rs";

/// memshim's totals for a baseline program (run once per test process).
pub fn memshim_baseline(file: &str) -> Totals {
    static CACHE: OnceLock<Mutex<HashMap<String, Totals>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().unwrap().get(file) {
        return *t;
    }
    let dir = scratch();
    let run = memcollect_run(&program(file), &[] as &[&str], &[], dir.path());
    assert_eq!(
        run.output.code(),
        0,
        "baseline {file} under memcollect: {}",
        run.output.stderr_str()
    );
    assert_eq!(
        run.processes.len(),
        1,
        "baseline {file}: expected one process in the report, got {:?}",
        run.processes.iter().map(|p| p.pid).collect::<Vec<_>>()
    );
    let t = run.processes[0].totals;
    assert_eq!(t.lost_events, 0, "baseline {file}: lost events");
    cache.lock().unwrap().insert(file.to_owned(), t);
    t
}

/// valgrind's summary for a baseline program (run once per test process);
/// None when valgrind is missing.
pub fn valgrind_baseline(file: &str) -> Option<VgStats> {
    static CACHE: OnceLock<Mutex<HashMap<String, VgStats>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().unwrap().get(file) {
        return Some(*t);
    }
    let dir = scratch();
    let run = valgrind_run(&program(file), &[] as &[&str], dir.path())?;
    assert_eq!(
        run.output.code(),
        0,
        "baseline {file} under valgrind:\n{}",
        run.output.stderr_str()
    );
    let s = run.single();
    cache.lock().unwrap().insert(file.to_owned(), s);
    Some(s)
}

/// Collects mismatches, then reports them all at once.
#[derive(Default)]
pub struct Mismatches(Vec<String>);

impl Mismatches {
    pub fn eq(&mut self, what: &str, actual: i64, expected: i64) {
        if actual != expected {
            self.0.push(format!(
                "{what}: got {actual}, expected {expected} (diff {})",
                actual - expected
            ));
        }
    }
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }
    pub fn finish(self, context: &str) {
        if !self.0.is_empty() {
            panic!("{context}:\n  {}", self.0.join("\n  "));
        }
    }
}

/// memshim's totals for one process, minus the baseline's, against the tally.
///
/// For a fork child the counters are the child's own (its parent's start-up
/// is not the child's), while its live set starts as the parent's, baseline
/// included.
pub fn memshim_vs_tally(
    m: &mut Mismatches,
    p: &ProcessReport,
    t: &Tally,
    base: &Totals,
    fork_child: bool,
) {
    let a = &p.totals;
    let (bc, bl, bpk) = if fork_child {
        (Totals::default(), base, base.live_bytes)
    } else {
        (*base, base, base.peak_bytes)
    };
    m.eq(
        "totals.blocks_allocated - baseline",
        a.blocks_allocated - bc.blocks_allocated,
        t.blocks_allocated,
    );
    m.eq(
        "totals.blocks_freed - baseline",
        a.blocks_freed - bc.blocks_freed,
        t.blocks_freed,
    );
    m.eq(
        "totals.bytes_allocated - baseline",
        a.bytes_allocated - bc.bytes_allocated,
        t.bytes_allocated,
    );
    m.eq(
        "totals.live_bytes - baseline",
        a.live_bytes - bl.live_bytes,
        t.live_bytes,
    );
    m.eq(
        "totals.live_blocks - baseline",
        a.live_blocks - bl.live_blocks,
        t.live_blocks,
    );
    if t.peak_bytes >= 0 {
        m.eq(
            "totals.peak_bytes - baseline",
            a.peak_bytes - bpk,
            t.peak_bytes,
        );
    }
    m.eq("totals.lost_events", a.lost_events, 0);
    m.check(
        p.exit_code() == Some(0),
        format!("exit: got {}, expected {{\"code\":0}}", p.exit),
    );
}

/// valgrind's summary for one process, minus the baseline's, against the
/// tally (valgrind's counts of a fork child include what it inherited).
pub fn valgrind_vs_tally(m: &mut Mismatches, v: &VgStats, t: &Tally, base: &VgStats) {
    m.eq(
        "valgrind allocs - baseline",
        v.allocs - base.allocs,
        t.blocks_allocated + t.base_blocks_allocated,
    );
    m.eq(
        "valgrind frees - baseline",
        v.frees - base.frees,
        t.blocks_freed + t.base_blocks_freed,
    );
    m.eq(
        "valgrind bytes allocated - baseline",
        v.bytes_allocated - base.bytes_allocated,
        t.bytes_allocated + t.base_bytes_allocated,
    );
    valgrind_live_vs_tally(m, v, t, base);
}

/// valgrind's bytes and blocks in use at exit, minus the baseline's, against
/// the tally's live set (for programs whose totals libc makes unknowable).
pub fn valgrind_live_vs_tally(m: &mut Mismatches, v: &VgStats, t: &Tally, base: &VgStats) {
    m.eq(
        "valgrind in use at exit (bytes) - baseline",
        v.in_use_bytes - base.in_use_bytes,
        t.live_bytes,
    );
    m.eq(
        "valgrind in use at exit (blocks) - baseline",
        v.in_use_blocks - base.in_use_blocks,
        t.live_blocks,
    );
}

/// Runs a single-process tally program under memcollect and checks every
/// total against its tally (minus the baseline program's). Returns the run
/// for further checks.
pub fn check_memshim_single(
    file: &str,
    tally_name: &str,
    baseline: &str,
) -> (MemshimRun, tempfile::TempDir) {
    let base = memshim_baseline(baseline);
    let dir = scratch();
    let run = memcollect_run(&program(file), &[] as &[&str], &["--top", "50"], dir.path());
    assert_eq!(
        run.output.code(),
        0,
        "memcollect run -- {file}: exit status; stderr:\n{}",
        run.output.stderr_str()
    );
    let (p, t) = run.process_of(tally_name);
    let mut m = Mismatches::default();
    m.check(
        run.processes.len() == 1,
        format!(
            "expected 1 process in the report, got {}",
            run.processes.len()
        ),
    );
    memshim_vs_tally(&mut m, p, &t, &base, false);
    m.finish(&format!(
        "memshim vs {file}'s own tally (baseline {baseline}: {base:?}; tally {t:?}; totals {:?})",
        p.totals
    ));
    (run, dir)
}

/// Runs a single-process tally program under valgrind and checks its heap
/// summary against the tally (minus the baseline's). Skips with a notice
/// when valgrind is missing.
pub fn check_valgrind_single(file: &str, tally_name: &str, baseline: &str) {
    let Some(base) = valgrind_baseline(baseline) else {
        return;
    };
    let dir = scratch();
    let Some(run) = valgrind_run(&program(file), &[] as &[&str], dir.path()) else {
        return;
    };
    assert_eq!(
        run.output.code(),
        0,
        "valgrind {file}: exit status (97 = memcheck errors):\n{}",
        run.output.stderr_str()
    );
    let t = Tally::only(&run.output.stderr_str(), tally_name);
    let v = run.pid(t.pid);
    let mut m = Mismatches::default();
    valgrind_vs_tally(&mut m, &v, &t, &base);
    m.finish(&format!("valgrind vs {file}'s own tally (baseline {baseline}: {base:?}; tally {t:?}; valgrind {v:?})"));
}
