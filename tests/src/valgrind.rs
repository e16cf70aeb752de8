//! Running a program under valgrind and reading its per-process heap summaries.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::exec::{run_captured, scrub_env, Output, DEFAULT_TIMEOUT};
use crate::tally::Tally;

/// One process's `HEAP SUMMARY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VgStats {
    pub allocs: i64,
    pub frees: i64,
    pub bytes_allocated: i64,
    pub in_use_bytes: i64,
    pub in_use_blocks: i64,
}

#[derive(Debug)]
pub struct VgRun {
    pub output: Output,
    pub per_pid: HashMap<i64, VgStats>,
    pub tallies: Vec<Tally>,
}

impl VgRun {
    pub fn pid(&self, pid: i64) -> VgStats {
        *self.per_pid.get(&pid).unwrap_or_else(|| {
            panic!(
                "valgrind printed no heap summary for pid {pid}:\n{}",
                self.output.stderr_str()
            )
        })
    }
    /// The summary of the only process (panics if there are several).
    pub fn single(&self) -> VgStats {
        assert_eq!(
            self.per_pid.len(),
            1,
            "expected one process:\n{}",
            self.output.stderr_str()
        );
        *self.per_pid.values().next().unwrap()
    }
}

pub fn valgrind_available() -> bool {
    crate::have_command("valgrind")
}

fn num(s: &str) -> i64 {
    s.replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("bad number {s:?} in valgrind output: {e}"))
}

/// Parses `==PID==     in use at exit: X bytes in Y blocks` and
/// `==PID==   total heap usage: N allocs, M frees, B bytes allocated`.
pub fn parse_valgrind(text: &str) -> HashMap<i64, VgStats> {
    let mut map: HashMap<i64, VgStats> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("==") else {
            continue;
        };
        let Some((pid, body)) = rest.split_once("==") else {
            continue;
        };
        let Ok(pid) = pid.parse::<i64>() else {
            continue;
        };
        let body = body.trim();
        let w: Vec<&str> = body.split_whitespace().collect();
        if let Some(r) = body.strip_prefix("in use at exit:") {
            // X bytes in Y blocks
            let w: Vec<&str> = r.split_whitespace().collect();
            let e = map.entry(pid).or_default();
            e.in_use_bytes = num(w[0]);
            e.in_use_blocks = num(w[3]);
        } else if body.starts_with("total heap usage:") {
            // total heap usage: N allocs, M frees, B bytes allocated
            let e = map.entry(pid).or_default();
            e.allocs = num(w[3]);
            e.frees = num(w[5]);
            e.bytes_allocated = num(w[7]);
        }
    }
    map
}

/// Runs `prog args` under
/// `valgrind --trace-children=yes --run-libc-freeres=no --run-cxx-freeres=no --leak-check=no`.
/// Returns None (after printing a notice) when valgrind is not installed.
pub fn valgrind_run<S: AsRef<OsStr>>(prog: &Path, args: &[S], dir: &Path) -> Option<VgRun> {
    if !valgrind_available() {
        crate::skip_notice("valgrind cross-check", "valgrind is not installed");
        return None;
    }
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--trace-children=yes",
        "--run-libc-freeres=no",
        "--run-cxx-freeres=no",
        "--leak-check=no",
        "--error-exitcode=97",
    ]);
    cmd.arg(prog).args(args).current_dir(dir);
    scrub_env(&mut cmd);
    let output = run_captured(&mut cmd, dir, DEFAULT_TIMEOUT);
    let text = output.stderr_str();
    let per_pid = parse_valgrind(&text);
    let tallies = Tally::parse_all(&text);
    Some(VgRun {
        output,
        per_pid,
        tallies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_summaries_with_separators() {
        let t = "==12== Memcheck\n==12==     in use at exit: 1,091,936 bytes in 111 blocks\n\
                 ==12==   total heap usage: 6,114 allocs, 6,003 frees, 11,402,120 bytes allocated\n\
                 {\"tally\":1}\n==13==     in use at exit: 0 bytes in 0 blocks\n\
                 ==13==   total heap usage: 0 allocs, 0 frees, 0 bytes allocated\n";
        let m = parse_valgrind(t);
        assert_eq!(
            m[&12],
            VgStats {
                allocs: 6114,
                frees: 6003,
                bytes_allocated: 11402120,
                in_use_bytes: 1091936,
                in_use_blocks: 111
            }
        );
        assert_eq!(m[&13], VgStats::default());
    }
}
