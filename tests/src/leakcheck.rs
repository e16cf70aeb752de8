//! Leak classes: memcheck's LEAK SUMMARY, memshim's `leaks`, and
//! `memcollect run` with arbitrary options (gates, JUnit, suppressions).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::build::memshim;
use crate::exec::{run_captured, scrub_env, Output, DEFAULT_TIMEOUT};

/// Bytes and blocks of one leak class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    pub bytes: i64,
    pub blocks: i64,
}

/// The four classes of memcheck's LEAK SUMMARY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Classes {
    pub definitely: Amount,
    pub indirectly: Amount,
    pub possibly: Amount,
    pub reachable: Amount,
}

impl Classes {
    /// `self - base`, class by class.
    pub fn minus(&self, base: &Classes) -> Classes {
        let d = |a: Amount, b: Amount| Amount {
            bytes: a.bytes - b.bytes,
            blocks: a.blocks - b.blocks,
        };
        Classes {
            definitely: d(self.definitely, base.definitely),
            indirectly: d(self.indirectly, base.indirectly),
            possibly: d(self.possibly, base.possibly),
            reachable: d(self.reachable, base.reachable),
        }
    }

    /// The `leaks` object of a process in the JSON report.
    pub fn from_json(leaks: &Value) -> Classes {
        let a = |k: &str| Amount {
            bytes: leaks[k]["bytes"]
                .as_i64()
                .unwrap_or_else(|| panic!("leaks.{k}.bytes missing: {leaks}")),
            blocks: leaks[k]["blocks"]
                .as_i64()
                .unwrap_or_else(|| panic!("leaks.{k}.blocks missing: {leaks}")),
        };
        Classes {
            definitely: a("definitely"),
            indirectly: a("indirectly"),
            possibly: a("possibly"),
            reachable: a("reachable"),
        }
    }
}

fn num(s: &str) -> i64 {
    s.replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("bad number {s:?} in valgrind output: {e}"))
}

/// Parses `definitely lost: X bytes in Y blocks` … `still reachable: …`
/// (all zero after "no leaks are possible").
pub fn parse_leak_summary(text: &str) -> Classes {
    let mut c = Classes::default();
    for line in text.lines() {
        let Some(body) = line.split("==").nth(2) else {
            continue;
        };
        let body = body.trim();
        let slot = if body.starts_with("definitely lost:") {
            &mut c.definitely
        } else if body.starts_with("indirectly lost:") {
            &mut c.indirectly
        } else if body.starts_with("possibly lost:") {
            &mut c.possibly
        } else if body.starts_with("still reachable:") {
            &mut c.reachable
        } else {
            continue;
        };
        // "<class>: X bytes in Y blocks"
        let w: Vec<&str> = body
            .split(':')
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if w.len() >= 4 {
            *slot = Amount {
                bytes: num(w[0]),
                blocks: num(w[3]),
            };
        }
    }
    c
}

/// Runs `prog` under `valgrind --leak-check=full` (no freeres, as memshim
/// cannot run it either); its LEAK SUMMARY and the wall time. None (after a
/// notice) without valgrind.
pub fn memcheck_leaks(prog: &Path, dir: &Path) -> Option<(Classes, Duration, Output)> {
    if !crate::valgrind_available() {
        crate::skip_notice("memcheck comparison", "valgrind is not installed");
        return None;
    }
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--leak-check=full",
        "--run-libc-freeres=no",
        "--run-cxx-freeres=no",
    ])
    .arg(prog)
    .current_dir(dir);
    scrub_env(&mut cmd);
    let start = Instant::now();
    let output = run_captured(&mut cmd, dir, DEFAULT_TIMEOUT);
    let took = start.elapsed();
    Some((parse_leak_summary(&output.stderr_str()), took, output))
}

/// The result of `memcollect run --format json --output FILE OPTIONS -- CMD`.
#[derive(Debug)]
pub struct GateRun {
    pub output: Output,
    /// The JSON report (Null if none was written).
    pub report: Value,
    pub took: Duration,
}

impl GateRun {
    /// The exit code of `memcollect run`.
    pub fn code(&self) -> i32 {
        self.output.code()
    }

    /// The processes of the report.
    pub fn processes(&self) -> Vec<Value> {
        self.report["processes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The one process whose command contains `needle` (panics otherwise).
    pub fn process_with(&self, needle: &str) -> Value {
        let found: Vec<Value> = self
            .processes()
            .into_iter()
            .filter(|p| {
                p["command"].as_str().is_some_and(|c| c.contains(needle)) && p["exit"] != "exec"
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one process with {needle:?} in its command: {:?}",
            self.processes()
                .iter()
                .map(|p| p["command"].clone())
                .collect::<Vec<_>>()
        );
        found[0].clone()
    }
}

/// Runs `memcollect run --format json --output <dir>/gate-N.json OPTIONS -- CMD…` in `dir`.
pub fn memcollect_gate<S: AsRef<OsStr>>(options: &[&str], cmd: &[S], dir: &Path) -> GateRun {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let report_path: PathBuf = dir.join(format!("gate-{n}.json"));
    let m = memshim();
    let mut c = Command::new(&m.memcollect);
    c.arg("run")
        .args(["--format", "json", "--output"])
        .arg(&report_path)
        .args(options)
        .arg("--")
        .args(cmd)
        .current_dir(dir);
    scrub_env(&mut c);
    let start = Instant::now();
    let output = run_captured(&mut c, dir, crate::RUN_TIMEOUT);
    let took = start.elapsed();
    let report = std::fs::read_to_string(&report_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    GateRun {
        output,
        report,
        took,
    }
}

/// The real python3 (pyenv's `python3` is a shell script that runs many processes).
pub fn real_python() -> Option<PathBuf> {
    if !crate::have_command("python3") {
        crate::skip_notice("python test", "python3 is not installed");
        return None;
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_leak_summary() {
        let t = "==7== LEAK SUMMARY:\n==7==    definitely lost: 1,380 bytes in 5 blocks\n\
                 ==7==    indirectly lost: 224 bytes in 5 blocks\n==7==      possibly lost: 160 bytes in 2 blocks\n\
                 ==7==    still reachable: 72,704 bytes in 1 blocks\n==7==         suppressed: 0 bytes in 0 blocks\n";
        let c = parse_leak_summary(t);
        assert_eq!(
            c.definitely,
            Amount {
                bytes: 1380,
                blocks: 5
            }
        );
        assert_eq!(
            c.indirectly,
            Amount {
                bytes: 224,
                blocks: 5
            }
        );
        assert_eq!(
            c.possibly,
            Amount {
                bytes: 160,
                blocks: 2
            }
        );
        assert_eq!(
            c.reachable,
            Amount {
                bytes: 72704,
                blocks: 1
            }
        );
        assert_eq!(
            parse_leak_summary("==7== All heap blocks were freed -- no leaks are possible"),
            Classes::default()
        );
    }
}
