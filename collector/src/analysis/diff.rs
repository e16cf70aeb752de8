//! Per-site growth between two reports (two snapshots, or two saved JSON
//! reports): `memcollect diff A B`.
//!
//! Processes are paired by pid, or, when each report has a single process,
//! with each other. Sites are matched by stack id within one pid, else by
//! their symbolized frames. A site missing from one side counts as zero there
//! (reports list only their top sites: snapshots keep up to 10,000).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::attribution::{attributed_frame, describe};
use crate::report::units::size;
use crate::report::{ProcessReport, Report, SiteReport};

/// The comparison of two reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    /// Name or path of the first report.
    pub a: String,
    /// Name or path of the second report.
    pub b: String,
    /// One entry per pair of processes.
    pub processes: Vec<ProcessDiff>,
}

/// The comparison of one process in both reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessDiff {
    /// Pid in A.
    pub pid_a: u32,
    /// Pid in B.
    pub pid_b: u32,
    /// Command line (B's).
    pub command: String,
    /// Live bytes in A.
    pub live_bytes_a: u64,
    /// Live bytes in B.
    pub live_bytes_b: u64,
    /// B minus A.
    pub delta_bytes: i64,
    /// Milliseconds between the two reports (B's duration minus A's).
    pub elapsed_ms: i64,
    /// Sites whose live bytes changed, largest growth first.
    pub sites: Vec<SiteDiff>,
}

/// The change of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteDiff {
    /// Stack id (B's, else A's).
    pub site: String,
    /// Attributed function.
    pub function: String,
    /// Attributed frame.
    pub location: String,
    /// Live bytes in A.
    pub live_bytes_a: u64,
    /// Live bytes in B.
    pub live_bytes_b: u64,
    /// B minus A.
    pub delta_bytes: i64,
    /// Live blocks, B minus A.
    pub delta_blocks: i64,
    /// Allocations made between A and B.
    pub delta_alloc_calls: i64,
    /// Growth per second between A and B (0 if no time passed).
    pub bytes_per_second: f64,
}

fn signature(s: &SiteReport) -> String {
    if s.frames.is_empty() {
        return s.id.clone();
    }
    s.frames
        .iter()
        .map(|f| {
            format!(
                "{}@{}:{}",
                f.function,
                f.file.as_deref().unwrap_or(""),
                f.line.unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn delta(a: u64, b: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn diff_process(a: &ProcessReport, b: &ProcessReport, top: usize) -> ProcessDiff {
    let same = a.pid == b.pid;
    let key = |s: &SiteReport| if same { s.id.clone() } else { signature(s) };
    let mut pairs: BTreeMap<String, (Option<&SiteReport>, Option<&SiteReport>)> = BTreeMap::new();
    for s in &a.sites {
        pairs.entry(key(s)).or_default().0 = Some(s);
    }
    for s in &b.sites {
        pairs.entry(key(s)).or_default().1 = Some(s);
    }
    let elapsed_ms = delta(a.duration_ms, b.duration_ms);
    let mut sites: Vec<SiteDiff> = pairs
        .into_values()
        .filter_map(|(sa, sb)| {
            let any = sb.or(sa)?;
            let get = |s: Option<&SiteReport>, f: fn(&SiteReport) -> u64| s.map_or(0, f);
            let d = delta(get(sa, |s| s.live_bytes), get(sb, |s| s.live_bytes));
            let (function, location) = attributed_frame(&any.frames)
                .map_or(("??".into(), String::new()), |f| {
                    (f.function.clone(), describe(f))
                });
            Some(SiteDiff {
                site: any.id.clone(),
                function,
                location,
                live_bytes_a: get(sa, |s| s.live_bytes),
                live_bytes_b: get(sb, |s| s.live_bytes),
                delta_bytes: d,
                delta_blocks: delta(get(sa, |s| s.live_blocks), get(sb, |s| s.live_blocks)),
                delta_alloc_calls: delta(get(sa, |s| s.alloc_calls), get(sb, |s| s.alloc_calls)),
                bytes_per_second: if elapsed_ms > 0 {
                    d as f64 * 1000.0 / elapsed_ms as f64
                } else {
                    0.0
                },
            })
        })
        .filter(|s| s.delta_bytes != 0 || s.delta_blocks != 0)
        .collect();
    sites.sort_by(|x, y| y.delta_bytes.cmp(&x.delta_bytes).then(x.site.cmp(&y.site)));
    sites.truncate(top);
    ProcessDiff {
        pid_a: a.pid,
        pid_b: b.pid,
        command: b.command.clone(),
        live_bytes_a: a.totals.live_bytes,
        live_bytes_b: b.totals.live_bytes,
        delta_bytes: delta(a.totals.live_bytes, b.totals.live_bytes),
        elapsed_ms,
        sites,
    }
}

/// Compares report `a` (named `name_a`) with report `b`, listing `top` sites per process.
pub fn diff(name_a: &str, a: &Report, name_b: &str, b: &Report, top: usize) -> DiffReport {
    let by_pid: HashMap<u32, &ProcessReport> = a.processes.iter().map(|p| (p.pid, p)).collect();
    let mut processes: Vec<ProcessDiff> = b
        .processes
        .iter()
        .filter_map(|pb| by_pid.get(&pb.pid).map(|pa| diff_process(pa, pb, top)))
        .collect();
    if processes.is_empty() && a.processes.len() == 1 && b.processes.len() == 1 {
        processes.push(diff_process(&a.processes[0], &b.processes[0], top));
    }
    DiffReport {
        a: name_a.to_owned(),
        b: name_b.to_owned(),
        processes,
    }
}

fn signed_size(d: i64) -> String {
    if d < 0 {
        format!("-{}", size(d.unsigned_abs()))
    } else {
        format!("+{}", size(d as u64))
    }
}

/// The diff as text.
pub fn render_text(d: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== diff {} -> {}", d.a, d.b);
    if d.processes.is_empty() {
        out.push_str("  no process appears in both reports\n");
    }
    for p in &d.processes {
        let _ = writeln!(
            out,
            "  pid {} -> {}  {}: live {} -> {} ({}) in {:.1} s",
            p.pid_a,
            p.pid_b,
            p.command,
            size(p.live_bytes_a),
            size(p.live_bytes_b),
            signed_size(p.delta_bytes),
            p.elapsed_ms as f64 / 1000.0
        );
        for (i, s) in p.sites.iter().enumerate() {
            let _ = writeln!(
                out,
                "  #{:<3} {:>12}  {:>+8} blocks  {} -> {}  at {}",
                i + 1,
                signed_size(s.delta_bytes),
                s.delta_blocks,
                size(s.live_bytes_a),
                size(s.live_bytes_b),
                if s.location.is_empty() {
                    &s.site
                } else {
                    &s.location
                }
            );
        }
    }
    out
}
