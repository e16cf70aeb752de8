//! Offline path: no collector listening, MEMSHIM_OUTPUT names a trace file;
//! `memcollect report --format json TRACE...` then gives the same exact
//! numbers. A process that finds the named file held by another live
//! process (a fork, a child it runs) writes `<name>.<pid>` beside it.

use std::process::Command;

use memshim_tests::*;

/// Runs `file` with MEMSHIM_OUTPUT=run.trace and checks, for each
/// `(tally name, forked child)`, that process's totals in the report of all
/// the trace files written.
fn traced(file: &str, tallies: &[(&str, bool)], baseline: &str) {
    let base = memshim_baseline(baseline);
    let dir = programs::scratch();
    let trace = dir.path().join("run.trace");
    let mut cmd = Command::new(program(file));
    cmd.current_dir(dir.path());
    scrub_env(&mut cmd);
    cmd.env("LD_PRELOAD", memshim().shim)
        .env("MEMSHIM_SOCKET", dir.path().join("nobody-listens.sock"))
        .env("MEMSHIM_OUTPUT", &trace);
    let out = run_captured(&mut cmd, dir.path(), RUN_TIMEOUT);
    assert_eq!(out.code(), 0, "{}", out.stderr_str());
    assert!(
        trace.is_file(),
        "no trace file at {}; stderr:\n{}",
        trace.display(),
        out.stderr_str()
    );
    let mut traces: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("run.trace"))
        .collect();
    traces.sort();
    assert_eq!(traces.len(), tallies.len(), "trace files: {traces:?}");

    let json = dir.path().join("report.json");
    let mut rep = Command::new(memshim().memcollect);
    rep.args(["report", "--format", "json", "--top", "20", "--output"])
        .arg(&json)
        .args(&traces);
    rep.current_dir(dir.path());
    scrub_env(&mut rep);
    let r = run_captured(&mut rep, dir.path(), RUN_TIMEOUT);
    assert_eq!(r.code(), 0, "memcollect report TRACE: {}", r.stderr_str());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report file")).expect("JSON report");
    let procs: Vec<ProcessReport> = v["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(ProcessReport::from_json)
        .collect();
    for &(tally_name, forked_child) in tallies {
        let t = Tally::only(&out.stderr_str(), tally_name);
        let p = procs.iter().find(|p| p.pid == t.pid).unwrap_or_else(|| {
            panic!(
                "pid {} not in the trace's report: {:?}",
                t.pid,
                procs.iter().map(|p| p.pid).collect::<Vec<_>>()
            )
        });
        let mut m = Mismatches::default();
        memshim_vs_tally(&mut m, p, &t, &base, forked_child);
        m.finish(&format!(
            "{file} through a trace file (tally {t:?}; totals {:?})",
            p.totals
        ));
    }
}

#[test]
fn leak_sites_through_a_trace_file() {
    traced("leak_sites.c", &[("leak_sites", false)], BASE_C);
}

#[test]
fn threads_through_a_trace_file() {
    traced("threads.c", &[("threads", false)], BASE_THREADS);
}

/// Parent and forked child both given `MEMSHIM_OUTPUT=run.trace` (no `%p`):
/// the child must not truncate or interleave the parent's file.
#[test]
fn fork_through_one_trace_file_name() {
    traced(
        "fork.c",
        &[("fork_parent", false), ("fork_child", true)],
        BASE_C,
    );
}
