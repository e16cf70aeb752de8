//! Offline path: no collector listening, MEMSHIM_OUTPUT names a trace file;
//! `memcollect report --format json TRACE` then gives the same exact numbers.

use std::process::Command;

use memshim_tests::*;

fn traced(file: &str, tally_name: &str, baseline: &str) {
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
    let t = Tally::only(&out.stderr_str(), tally_name);
    assert!(
        trace.is_file(),
        "no trace file at {}; stderr:\n{}",
        trace.display(),
        out.stderr_str()
    );

    let json = dir.path().join("report.json");
    let mut rep = Command::new(memshim().memcollect);
    rep.args(["report", "--format", "json", "--top", "20", "--output"])
        .arg(&json)
        .arg(&trace);
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
    let p = procs.iter().find(|p| p.pid == t.pid).unwrap_or_else(|| {
        panic!(
            "pid {} not in the trace's report: {:?}",
            t.pid,
            procs.iter().map(|p| p.pid).collect::<Vec<_>>()
        )
    });
    let mut m = Mismatches::default();
    memshim_vs_tally(&mut m, p, &t, &base, false);
    m.finish(&format!(
        "{file} through a trace file (tally {t:?}; totals {:?})",
        p.totals
    ));
}

#[test]
fn leak_sites_through_a_trace_file() {
    traced("leak_sites.c", "leak_sites", BASE_C);
}

#[test]
fn threads_through_a_trace_file() {
    traced("threads.c", "threads", BASE_THREADS);
}
