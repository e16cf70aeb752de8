//! Pass/fail gates over a report: leaks and peaks, per process and for the tree.
//!
//! * `--fail-on-leak[=LEVEL]`: a process fails when it leaves lost memory at
//!   LEVEL (after suppressions): `definitely` (the default) counts definitely
//!   and indirectly lost blocks (an indirect leak hangs off a definite one),
//!   `possibly` adds possibly lost blocks, `reachable` adds still reachable ones.
//! * `--max-leak SIZE`: a process fails when its bytes at the leak level
//!   (that of `--fail-on-leak`, else `definitely`) exceed SIZE.
//! * `--max-peak SIZE`: a process fails when its heap peak exceeds SIZE.
//! * `--max-leak-total SIZE`, `--max-peak-total SIZE`: the tree fails when the
//!   sum over its processes exceeds SIZE (the sum of peaks is an upper bound of
//!   the tree's simultaneous peak).
//!
//! Images replaced by `exec` are not processes of their own and are not
//! gated; a process without an exit scan (killed, stream cut) is only gated
//! on its peak.

use std::fmt::Write;

use crate::report::units::{size, size_exact};
use crate::report::{Amount, Leaks, ProcessReport, Report, SiteReport};
use crate::state::Exit;

/// The exit code of `memcollect run` (and `report`) when a gate fails.
pub const GATE_FAILED: i32 = 99;

/// Leaking sites named per failing process.
const SITES_NAMED: usize = 5;
/// Frames shown per named site.
const FRAMES_NAMED: usize = 4;

/// Which leak classes a leak gate counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LeakLevel {
    /// Definitely and indirectly lost.
    #[default]
    Definitely,
    /// Definitely, indirectly and possibly lost.
    Possibly,
    /// Every block still live at exit, reachable ones included.
    Reachable,
}

impl LeakLevel {
    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            LeakLevel::Definitely => "definitely",
            LeakLevel::Possibly => "possibly",
            LeakLevel::Reachable => "reachable",
        }
    }

    /// What a process leaves at this level.
    pub fn amount(self, p: &ProcessReport) -> Amount {
        self.of(&p.leaks)
    }

    /// What a site leaves at this level.
    fn site_amount(self, s: &SiteReport) -> Amount {
        s.leak
            .as_ref()
            .and_then(|l| l.classes.as_ref())
            .map_or_else(Amount::default, |c| self.of(c))
    }

    /// The classes counted at this level, summed.
    fn of(self, l: &Leaks) -> Amount {
        let mut parts = vec![l.definitely, l.indirectly];
        if self != LeakLevel::Definitely {
            parts.push(l.possibly);
        }
        if self == LeakLevel::Reachable {
            parts.push(l.reachable);
        }
        Amount {
            bytes: parts.iter().map(|a| a.bytes).sum(),
            blocks: parts.iter().map(|a| a.blocks).sum(),
        }
    }
}

/// The gates asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gates {
    /// `--fail-on-leak[=LEVEL]`.
    pub fail_on_leak: Option<LeakLevel>,
    /// `--max-leak SIZE`.
    pub max_leak: Option<u64>,
    /// `--max-peak SIZE`.
    pub max_peak: Option<u64>,
    /// `--max-leak-total SIZE`.
    pub max_leak_total: Option<u64>,
    /// `--max-peak-total SIZE`.
    pub max_peak_total: Option<u64>,
}

/// A failing process and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFailure {
    /// Index in the report's processes.
    pub index: usize,
    /// One line per failed gate.
    pub reasons: Vec<String>,
    /// The whole message for this process (reasons and sites).
    pub message: String,
}

/// The outcome of the gates over a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Processes that failed a gate.
    pub processes: Vec<ProcessFailure>,
    /// Tree-wide gates that failed.
    pub tree: Vec<String>,
    /// Processes that were gated.
    pub gated: usize,
}

impl Verdict {
    /// Whether any gate failed.
    pub fn failed(&self) -> bool {
        !self.processes.is_empty() || !self.tree.is_empty()
    }

    /// The failure of the process at `index`, if it failed.
    pub fn of(&self, index: usize) -> Option<&ProcessFailure> {
        self.processes.iter().find(|f| f.index == index)
    }
}

/// Parses a size: `4096`, `512k`, `10MiB`, `1.5G`, `2 MB` (k, M, G, T are
/// binary multiples, with or without `i` and `B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad size `{text}` (examples: 4096, 512k, 10MiB, 1G)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("bad size unit in `{text}` (B, k, M, G, T)")),
    };
    if unit == "i" || unit == "ib" && shift == 0 {
        return Err(format!("bad size unit in `{text}` (B, k, M, G, T)"));
    }
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size `{text}` out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Whether a process image is gated (and a JUnit test case): every image
/// but one replaced by `exec`.
pub fn is_gated(p: &ProcessReport) -> bool {
    p.exit != Exit::Exec
}

fn amount_text(a: Amount) -> String {
    format!(
        "{} in {} block{}",
        size_exact(a.bytes),
        a.blocks,
        if a.blocks == 1 { "" } else { "s" }
    )
}

/// Evaluates the gates.
pub fn evaluate(report: &Report, gates: &Gates) -> Verdict {
    let mut verdict = Verdict::default();
    let level = gates.fail_on_leak.unwrap_or_default();
    let (mut leak_total, mut peak_total) = (0u64, 0u64);
    for (index, p) in report.processes.iter().enumerate() {
        if !is_gated(p) {
            continue;
        }
        verdict.gated += 1;
        let mut reasons = Vec::new();
        let scanned = p.leak_scan.is_some();
        let left = level.amount(p);
        leak_total += left.bytes;
        peak_total += p.totals.peak_bytes;
        let mut leak_failed = false;
        if let (Some(l), true) = (gates.fail_on_leak, scanned) {
            if left.blocks > 0 {
                leak_failed = true;
                reasons.push(format!(
                    "--fail-on-leak={}: {} lost (definitely {}, indirectly {}{}); allowed: none",
                    l.name(),
                    amount_text(left),
                    amount_text(p.leaks.definitely),
                    amount_text(p.leaks.indirectly),
                    match l {
                        LeakLevel::Definitely => String::new(),
                        LeakLevel::Possibly =>
                            format!(", possibly {}", amount_text(p.leaks.possibly)),
                        LeakLevel::Reachable => format!(
                            ", possibly {}, reachable {}",
                            amount_text(p.leaks.possibly),
                            amount_text(p.leaks.reachable)
                        ),
                    }
                ));
            }
        }
        if let (Some(max), true) = (gates.max_leak, scanned) {
            if left.bytes > max {
                leak_failed = true;
                reasons.push(format!(
                    "--max-leak {} (level {}): {} lost, {} over",
                    size(max),
                    level.name(),
                    amount_text(left),
                    size_exact(left.bytes - max)
                ));
            }
        }
        let mut peak_failed = false;
        if let Some(max) = gates.max_peak {
            if p.totals.peak_bytes > max {
                peak_failed = true;
                reasons.push(format!(
                    "--max-peak {}: peak heap {} at {} ms, {} over",
                    size(max),
                    size_exact(p.totals.peak_bytes),
                    p.totals.peak_at_ms,
                    size_exact(p.totals.peak_bytes - max)
                ));
            }
        }
        if reasons.is_empty() {
            continue;
        }
        let message = process_message(p, &reasons, level, leak_failed, peak_failed);
        verdict.processes.push(ProcessFailure {
            index,
            reasons,
            message,
        });
    }
    if let Some(max) = gates.max_leak_total {
        if leak_total > max {
            verdict.tree.push(format!(
                "--max-leak-total {} (level {}): the processes lost {} in all, {} over",
                size(max),
                level.name(),
                size_exact(leak_total),
                size_exact(leak_total - max)
            ));
        }
    }
    if let Some(max) = gates.max_peak_total {
        if peak_total > max {
            verdict.tree.push(format!(
                "--max-peak-total {}: the processes' peaks add up to {}, {} over",
                size(max),
                size_exact(peak_total),
                size_exact(peak_total - max)
            ));
        }
    }
    verdict
}

fn process_message(
    p: &ProcessReport,
    reasons: &[String],
    level: LeakLevel,
    leak_failed: bool,
    peak_failed: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pid {}  {}  [{}]",
        p.pid,
        p.command,
        exit_word(&p.exit)
    );
    for r in reasons {
        let _ = writeln!(out, "  {r}");
    }
    if leak_failed {
        let mut sites: Vec<(&SiteReport, Amount)> = p
            .leak_sites
            .iter()
            .chain(p.sites.iter())
            .map(|s| (s, level.site_amount(s)))
            .filter(|(_, a)| a.blocks > 0)
            .collect();
        sites.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.id.cmp(&b.0.id)));
        sites.dedup_by(|a, b| a.0.id == b.0.id);
        for (s, a) in sites.iter().take(SITES_NAMED) {
            let class = s.leak.as_ref().map_or("", |l| l.class.as_str());
            let _ = writeln!(
                out,
                "  site {}: {} lost (worst class: {class})",
                s.id,
                amount_text(*a)
            );
            for f in s.frames.iter().take(FRAMES_NAMED) {
                let _ = writeln!(
                    out,
                    "      at {}",
                    crate::analysis::attribution::describe(f)
                );
            }
        }
        if sites.len() > SITES_NAMED {
            let _ = writeln!(
                out,
                "  ... and {} more leaking sites (see the report)",
                sites.len() - SITES_NAMED
            );
        }
    }
    if peak_failed {
        for o in p.peak.owners.iter().take(3) {
            let _ = writeln!(
                out,
                "  at the peak, site {} held {}: {}",
                o.site.site,
                size(o.bytes),
                o.site.location
            );
        }
    }
    out
}

fn exit_word(exit: &Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exit {c}"),
        Exit::Signal(s) => format!("signal {s}"),
        Exit::Cut => "stream cut".into(),
        Exit::Exited => "exited".into(),
        Exit::Exec => "exec".into(),
        Exit::Running => "running".into(),
    }
}

/// The block printed on stderr when a gate failed.
pub fn render(verdict: &Verdict, report: &Report) -> String {
    let mut out = format!(
        "memcollect: GATE FAILED (exit code {GATE_FAILED}): {} of {} process{} failed{}\n",
        verdict.processes.len(),
        verdict.gated,
        if verdict.gated == 1 { "" } else { "es" },
        if verdict.tree.is_empty() {
            ""
        } else {
            ", and the process tree"
        }
    );
    for f in &verdict.processes {
        if report.processes.get(f.index).is_some() {
            for line in f.message.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    for t in &verdict.tree {
        let _ = writeln!(out, "  tree: {t}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10q").is_err());
        assert!(parse_size("10i").is_err());
        assert!(parse_size("-5").is_err());
    }
}
