//! Choosing processes: `--only PATTERN`, and telling short-lived helper
//! processes (shells, `sed`, images replaced by `exec`) from the programs
//! worth a section of their own in the text report.

use crate::analysis::attribution::base_name;
use crate::analysis::categories::glob;
use crate::report::{ProcessReport, Report};
use crate::state::Exit;

/// Heap peak under which a process that leaks nothing and exits 0 is a helper.
pub const HELPER_PEAK: u64 = 256 << 10;

/// Whether `pattern` selects process `p`: a glob (when it has `*` or `?`)
/// matching the whole command line, the executable's path or its file name;
/// else a substring of the command line or the executable's path.
pub fn matches(pattern: &str, p: &ProcessReport) -> bool {
    if pattern.contains(['*', '?']) {
        glob(pattern, &p.command) || glob(pattern, &p.exe) || glob(pattern, base_name(&p.exe))
    } else {
        p.command.contains(pattern) || p.exe.contains(pattern)
    }
}

/// Keeps the processes any of `patterns` selects (all when there are none).
pub fn only(report: &mut Report, patterns: &[String]) {
    if patterns.is_empty() {
        return;
    }
    report
        .processes
        .retain(|p| patterns.iter().any(|pat| matches(pat, p)));
}

/// Whether `p` is a short-lived helper, summarized in one line of the text
/// report: an image replaced by `exec`, or a process that exited 0 without
/// lost memory (after suppressions) and with a heap peak under [`HELPER_PEAK`].
pub fn is_helper(p: &ProcessReport) -> bool {
    match p.exit {
        Exit::Exec => true,
        Exit::Code(0) => p.leaks.lost().blocks == 0 && p.totals.peak_bytes < HELPER_PEAK,
        _ => false,
    }
}
