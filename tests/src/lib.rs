//! Helpers shared by the end-to-end tests.
//!
//! - [`paths`]: where the workspace, its target directory and the test programs are.
//! - [`build`]: builds `libmemshim.so` and `memcollect` once per test process.
//! - [`programs`]: compiles a program of `tests/programs/` (C, C++ or Rust) once per process.
//! - [`exec`]: runs commands with a timeout, capturing their output in files.
//! - [`tally`]: the programs' own account of their heap activity (`tally.h`).
//! - [`report`]: running under `memcollect run` and reading its JSON report.
//! - [`serving`]: a `memcollect serve` child, preloaded programs joining it, live reports.
//! - [`valgrind`]: running under valgrind and reading its heap summaries.
//! - [`check`]: the exact comparisons the tests make.
//! - [`leakcheck`]: memcheck's LEAK SUMMARY, memshim's leak classes, `memcollect run` with gates.

pub mod build;
pub mod check;
pub mod exec;
pub mod leakcheck;
pub mod paths;
pub mod programs;
pub mod report;
pub mod serving;
pub mod tally;
pub mod valgrind;

pub use build::memshim;
pub use check::*;
pub use exec::{
    run_captured, run_plain, scrub_env, spawn_captured, Output, Running, DEFAULT_TIMEOUT,
};
pub use programs::program;
pub use report::{
    memcollect_run, memcollect_run_timeout, MemshimRun, ProcessReport, Totals, RUN_TIMEOUT,
};
pub use tally::Tally;
pub use valgrind::{valgrind_available, valgrind_run, VgRun, VgStats};

/// Prints a notice that a test (or part of one) is skipped, visible with `--nocapture`
/// and in the captured output of a failing test.
///
/// Under CI (`CI` set, as `.ci/run` runs), whose script installs every tool
/// the tests use, a missing tool is a failure instead: a check that silently
/// skips there could never fail.
pub fn skip_notice(what: &str, why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{what} cannot run under CI: {why} (.ci/run should have installed it)");
    }
    eprintln!("NOTICE: skipping {what}: {why}");
}

/// Whether an executable is on PATH.
pub fn have_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).any(|d| {
                let f = d.join(name);
                f.is_file()
                    && std::fs::metadata(&f)
                        .map(|m| {
                            use std::os::unix::fs::PermissionsExt;
                            m.permissions().mode() & 0o111 != 0
                        })
                        .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}
