//! The JUnit XML report: one test case per gated process.
//!
//! ```xml
//! <testsuites name="memshim" tests="3" failures="1">
//!   <testsuite name="memshim" tests="3" failures="1" errors="0" time="0.042">
//!     <testcase name="./prog --arg" classname="memshim" time="0.012">
//!       <failure message="--fail-on-leak=definitely: 100 B lost …" type="memshim.gate">…</failure>
//!       <system-out>pid, exit, peak and leak summary</system-out>
//!     </testcase>
//!   </testsuite>
//! </testsuites>
//! ```
//!
//! Test case names are the processes' command lines; tree-wide gate failures
//! add one test case named `memshim: process tree`.

use std::fmt::Write;

use super::gates::{is_gated, Verdict};
use crate::report::units::size_exact;
use crate::report::Report;

/// Escapes text for XML content and attribute values; drops the characters XML 1.0 forbids.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the JUnit XML document.
pub fn render(report: &Report, verdict: &Verdict) -> String {
    let mut cases = String::new();
    let (mut tests, mut failures, mut total_ms) = (0usize, 0usize, 0u64);
    for (index, p) in report.processes.iter().enumerate() {
        if !is_gated(p) {
            continue;
        }
        tests += 1;
        total_ms = total_ms.max(p.duration_ms);
        let _ = writeln!(
            cases,
            "    <testcase name=\"{}\" classname=\"memshim\" time=\"{:.3}\">",
            escape(&p.command),
            p.duration_ms as f64 / 1000.0
        );
        if let Some(f) = verdict.of(index) {
            failures += 1;
            let _ = writeln!(
                cases,
                "      <failure message=\"{}\" type=\"memshim.gate\">{}</failure>",
                escape(&f.reasons.join("; ")),
                escape(&f.message)
            );
        }
        let l = &p.leaks;
        let summary = format!(
            "pid {} exe {} exit {:?}\npeak heap {}\ndefinitely lost {} in {} blocks\nindirectly lost {} in {} blocks\npossibly lost {} in {} blocks\nstill reachable {} in {} blocks\nsuppressed {} in {} blocks\n",
            p.pid,
            p.exe,
            p.exit,
            size_exact(p.totals.peak_bytes),
            l.definitely.bytes,
            l.definitely.blocks,
            l.indirectly.bytes,
            l.indirectly.blocks,
            l.possibly.bytes,
            l.possibly.blocks,
            l.reachable.bytes,
            l.reachable.blocks,
            l.suppressed.bytes,
            l.suppressed.blocks,
        );
        let _ = writeln!(cases, "      <system-out>{}</system-out>", escape(&summary));
        cases.push_str("    </testcase>\n");
    }
    if !verdict.tree.is_empty() {
        tests += 1;
        failures += 1;
        let text = verdict.tree.join("; ");
        let _ = writeln!(
            cases,
            "    <testcase name=\"memshim: process tree\" classname=\"memshim\" time=\"0\">\n      <failure message=\"{}\" type=\"memshim.gate\">{}</failure>\n    </testcase>",
            escape(&text),
            escape(&text)
        );
    }
    let time = total_ms as f64 / 1000.0;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"memshim\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">\n  <testsuite name=\"memshim\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\">\n{cases}  </testsuite>\n</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;?"
        );
    }

    #[test]
    fn empty_report() {
        let r = Report {
            version: 1,
            processes: Vec::new(),
        };
        let x = render(&r, &Verdict::default());
        assert!(x.contains("tests=\"0\" failures=\"0\""));
    }
}
