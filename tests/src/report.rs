//! Running a program under `memcollect run` and reading the JSON report.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::build::memshim;
use crate::exec::{run_captured, scrub_env, Output};
use crate::tally::Tally;

/// A process's `totals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub alloc_calls: i64,
    pub free_calls: i64,
    pub realloc_calls: i64,
    pub blocks_allocated: i64,
    pub blocks_freed: i64,
    pub bytes_allocated: i64,
    pub peak_bytes: i64,
    pub live_bytes: i64,
    pub live_blocks: i64,
    pub lost_events: i64,
    pub queue_wait_ns: i64,
}

fn int(v: &Value, k: &str, ctx: &str) -> i64 {
    match &v[k] {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| panic!("{ctx}.{k} is not an integer: {n}")),
        other => panic!("{ctx}.{k} missing or not a number: {other}"),
    }
}

impl Totals {
    pub fn from_json(t: &Value) -> Totals {
        let c = "totals";
        Totals {
            alloc_calls: int(t, "alloc_calls", c),
            free_calls: int(t, "free_calls", c),
            realloc_calls: int(t, "realloc_calls", c),
            blocks_allocated: int(t, "blocks_allocated", c),
            blocks_freed: int(t, "blocks_freed", c),
            bytes_allocated: int(t, "bytes_allocated", c),
            peak_bytes: int(t, "peak_bytes", c),
            live_bytes: int(t, "live_bytes", c),
            live_blocks: int(t, "live_blocks", c),
            lost_events: int(t, "lost_events", c),
            queue_wait_ns: int(t, "queue_wait_ns", c),
        }
    }
}

/// One frame of a site's stack.
#[derive(Debug, Clone)]
pub struct Frame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<i64>,
    pub module: Option<String>,
}

/// One allocation site.
#[derive(Debug, Clone)]
pub struct Site {
    pub frames: Vec<Frame>,
    pub alloc_calls: i64,
    pub bytes_allocated: i64,
    pub live_bytes: i64,
    pub live_blocks: i64,
    pub peak_bytes: i64,
    pub json: Value,
}

impl Site {
    pub fn from_json(s: &Value) -> Site {
        let frames = s["frames"]
            .as_array()
            .unwrap_or_else(|| panic!("site without frames array: {s}"))
            .iter()
            .map(|f| Frame {
                function: f["function"].as_str().map(str::to_owned),
                file: f["file"].as_str().map(str::to_owned),
                line: f["line"].as_i64(),
                module: f["module"].as_str().map(str::to_owned),
            })
            .collect();
        Site {
            frames,
            alloc_calls: int(s, "alloc_calls", "site"),
            bytes_allocated: int(s, "bytes_allocated", "site"),
            live_bytes: int(s, "live_bytes", "site"),
            live_blocks: int(s, "live_blocks", "site"),
            peak_bytes: int(s, "peak_bytes", "site"),
            json: s.clone(),
        }
    }

    pub fn functions(&self) -> Vec<&str> {
        self.frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .collect()
    }

    /// A one-line description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "site live={} B/{} blocks, alloc_calls={}, bytes={}, frames={:?}",
            self.live_bytes,
            self.live_blocks,
            self.alloc_calls,
            self.bytes_allocated,
            self.frames
                .iter()
                .map(|f| format!(
                    "{}@{}",
                    f.function.as_deref().unwrap_or("?"),
                    f.module
                        .as_deref()
                        .map(|m| m.rsplit('/').next().unwrap_or(m))
                        .unwrap_or("?")
                ))
                .collect::<Vec<_>>()
        )
    }
}

/// One entry of `processes[]`.
#[derive(Debug, Clone)]
pub struct ProcessReport {
    pub pid: i64,
    pub ppid: i64,
    pub exit: Value,
    pub totals: Totals,
    pub sites: Vec<Site>,
    pub json: Value,
}

impl ProcessReport {
    pub fn from_json(p: &Value) -> ProcessReport {
        ProcessReport {
            pid: int(p, "pid", "process"),
            ppid: int(p, "ppid", "process"),
            exit: p["exit"].clone(),
            totals: Totals::from_json(&p["totals"]),
            sites: p["sites"]
                .as_array()
                .map(|a| a.iter().map(Site::from_json).collect())
                .unwrap_or_default(),
            json: p.clone(),
        }
    }

    /// `exit.code` when the process exited normally.
    pub fn exit_code(&self) -> Option<i64> {
        self.exit.get("code").and_then(Value::as_i64)
    }

    pub fn exe(&self) -> String {
        self.json["exe"].as_str().unwrap_or("").to_owned()
    }
}

/// The result of `memcollect run --format json --output report.json -- prog args`.
#[derive(Debug)]
pub struct MemshimRun {
    pub output: Output,
    pub report: Value,
    pub report_path: PathBuf,
    pub processes: Vec<ProcessReport>,
    pub tallies: Vec<Tally>,
}

impl MemshimRun {
    /// The report's process with this pid: its final image (an image that
    /// ended in `exec` shares the pid of the one that replaced it); panics
    /// (listing the pids) if there is none, or more than one.
    pub fn process(&self, pid: i64) -> &ProcessReport {
        let images: Vec<&ProcessReport> = self
            .processes
            .iter()
            .filter(|p| p.pid == pid && p.exit != "exec")
            .collect();
        match images.as_slice() {
            [one] => one,
            _ => {
                panic!(
                "expected one final image of process {pid} in the report, got {} (processes: {:?})",
                images.len(),
                self.processes.iter().map(|p| (p.pid, p.exit.to_string())).collect::<Vec<_>>()
            )
            }
        }
    }

    /// The report's process for the only tally line of `program`.
    pub fn process_of(&self, program: &str) -> (&ProcessReport, Tally) {
        let t = Tally::only(&self.output.stderr_str(), program);
        (self.process(t.pid), t)
    }
}

/// Runs `prog args` under `memcollect run --format json --output <dir>/report-N.json`
/// (plus `extra` options before `--`), in `dir`, and parses the report.
/// Panics if memcollect fails to write a parseable report.
/// Gives up (killing the process group) after [`RUN_TIMEOUT`]: every program
/// of the suite but the stress one ends in a few seconds under memcollect.
pub fn memcollect_run<S: AsRef<OsStr>>(
    prog: &Path,
    args: &[S],
    extra: &[&str],
    dir: &Path,
) -> MemshimRun {
    memcollect_run_timeout(prog, args, extra, dir, RUN_TIMEOUT)
}

/// How long a `memcollect run` of a small program may take before the test
/// calls it a hang.
pub const RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// [`memcollect_run`] with an explicit timeout.
pub fn memcollect_run_timeout<S: AsRef<OsStr>>(
    prog: &Path,
    args: &[S],
    extra: &[&str],
    dir: &Path,
    timeout: std::time::Duration,
) -> MemshimRun {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let m = memshim();
    let report_path = dir.join(format!("report-{n}.json"));
    let mut cmd = Command::new(&m.memcollect);
    cmd.arg("run")
        .args(["--format", "json", "--output"])
        .arg(&report_path);
    cmd.args(extra)
        .arg("--")
        .arg(prog)
        .args(args)
        .current_dir(dir);
    scrub_env(&mut cmd);
    let output = run_captured(&mut cmd, dir, timeout);
    let text = std::fs::read_to_string(&report_path).unwrap_or_else(|e| {
        panic!(
            "memcollect run wrote no report at {} ({e}); status {:?}; stderr:\n{}",
            report_path.display(),
            output.status,
            output.stderr_str()
        )
    });
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}",
            &text[..text.len().min(2000)]
        )
    });
    assert_eq!(report["version"], 1, "report version");
    let processes = report["processes"]
        .as_array()
        .unwrap_or_else(|| panic!("report has no processes array"))
        .iter()
        .map(ProcessReport::from_json)
        .collect();
    let tallies = Tally::parse_all(&output.stderr_str());
    MemshimRun {
        output,
        report,
        report_path,
        processes,
        tallies,
    }
}
