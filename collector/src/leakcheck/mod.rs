//! Leak checking on top of the exit scan's classes: suppressions, pass/fail
//! gates, the JUnit report, and the selection of processes (`--only`).
//!
//! * [`suppressions`]: the suppressions file format, the default set, generated suppressions.
//! * [`gates`](mod@gates): `--fail-on-leak`, `--max-leak`, `--max-peak` and their messages.
//! * [`junit`]: the JUnit XML report.
//! * [`select`]: `--only PATTERN`, and which processes are short-lived helpers.

pub mod gates;
pub mod junit;
pub mod select;
pub mod suppressions;

use std::io::Write;
use std::sync::Arc;

use crate::cli::LeakArgs;
use crate::commands::output::Terminal;
use crate::failure::Failure;
use crate::report::Report;
use gates::{Gates, GATE_FAILED};
use suppressions::Suppressions;

/// Exit code for a malformed suppressions file.
pub const BAD_SUPPRESSIONS: i32 = 2;

/// The suppressions to apply: the files of `--suppressions`, then the
/// default set unless `--no-default-suppressions`. A malformed file is an
/// error naming `FILE:LINE`, with exit code [`BAD_SUPPRESSIONS`].
pub fn load_suppressions(args: &LeakArgs) -> Result<Option<Arc<Suppressions>>, Failure> {
    Suppressions::assemble(&args.suppressions, !args.no_default_suppressions)
        .map(|s| s.map(Arc::new))
        .map_err(|e| Failure::with_code(e, BAD_SUPPRESSIONS))
}

/// The gates `args` asks for.
pub fn gates(args: &LeakArgs) -> Gates {
    Gates {
        fail_on_leak: args.fail_on_leak,
        max_leak: args.max_leak,
        max_peak: args.max_peak,
        max_leak_total: args.max_leak_total,
        max_peak_total: args.max_peak_total,
    }
}

fn write_to(terminal: Terminal, text: &str) -> std::io::Result<()> {
    match terminal {
        Terminal::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Terminal::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    }
}

/// After the report is written: generated suppressions, the JUnit file and
/// the gates. Returns `Some(GATE_FAILED)` when a gate failed (its block is
/// then printed on stderr, whatever `--output` says).
pub fn conclude(
    report: &Report,
    args: &LeakArgs,
    terminal: Terminal,
) -> Result<Option<i32>, Failure> {
    if let Some(target) = &args.gen_suppressions {
        let mut text = String::new();
        for p in report.processes.iter().filter(|p| gates::is_gated(p)) {
            let generated: Vec<String> = p
                .leak_sites
                .iter()
                .filter_map(suppressions::generate)
                .collect();
            if generated.is_empty() {
                continue;
            }
            text.push_str(&format!("# pid {}  {}\n", p.pid, p.command));
            for g in generated {
                text.push_str(&g);
                text.push('\n');
            }
        }
        if target.as_os_str() == "-" {
            if text.is_empty() {
                text.push_str("# memcollect: no leaking site to suppress\n");
            }
            write_to(terminal, &text).map_err(|e| format!("cannot write the suppressions: {e}"))?;
        } else {
            std::fs::write(target, text).map_err(|e| {
                format!("cannot write the suppressions to {}: {e}", target.display())
            })?;
        }
    }
    let verdict = gates::evaluate(report, &gates(args));
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::render(report, &verdict))
            .map_err(|e| format!("cannot write the JUnit report to {}: {e}", path.display()))?;
    }
    if verdict.failed() {
        let _ = std::io::stderr()
            .lock()
            .write_all(gates::render(&verdict, report).as_bytes());
        return Ok(Some(GATE_FAILED));
    }
    Ok(None)
}
