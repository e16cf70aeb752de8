//! The human-readable report.

use std::fmt::Write;
use std::path::Path;

use super::text_analysis::{process_analysis, site_details};
use super::units::{count, duration_ms, size, size_exact};
use super::{Frame, ProcessReport, Report, SiteReport};
use crate::state::Exit;

/// Frames shown per site.
const FRAMES_SHOWN: usize = 6;

/// Renders the whole report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if report.processes.is_empty() {
        out.push_str("memcollect: no process was profiled (did the shim load? is the program statically linked?)\n");
        return out;
    }
    for p in &report.processes {
        process(&mut out, p);
    }
    summary(&mut out, &report.processes);
    out
}

/// `n thing` or `n things`.
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{} {thing}s", count(n))
    }
}

fn exit_text(exit: &Exit) -> String {
    match exit {
        Exit::Running => "running".into(),
        Exit::Code(c) => format!("exit {c}"),
        Exit::Signal(s) => format!("killed by signal {s} ({})", signal_name(*s)),
        Exit::Exited => "exited (code unknown)".into(),
        Exit::Cut => "stream cut (abnormal death)".into(),
        Exit::Exec => "replaced by exec".into(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

fn process(out: &mut String, p: &ProcessReport) {
    let t = &p.totals;
    let title = format!(
        "== pid {}  {}  [{}]  {} ",
        p.pid,
        p.command,
        exit_text(&p.exit),
        duration_ms(p.duration_ms)
    );
    let _ = writeln!(
        out,
        "{title}{}",
        "=".repeat(78usize.saturating_sub(title.chars().count()))
    );
    let origin = match p.forked_from {
        Some(parent) => format!("forked from {parent}, inherited its heap"),
        None => format!("parent {}", p.ppid),
    };
    let _ = writeln!(out, "  exe {}  ({origin})", p.exe);
    if p.sample_bytes > 0 {
        let _ = writeln!(
            out,
            "  sampled: one record per {} on average; counts are estimates",
            size(p.sample_bytes)
        );
    }
    if t.lost_events > 0 {
        let _ = writeln!(
            out,
            "  !! {} EVENTS WERE DROPPED by the shim: every number below undercounts !!",
            count(t.lost_events)
        );
    }
    let _ = writeln!(
        out,
        "  allocations   {} calls + {} reallocs, {} requested",
        count(t.alloc_calls),
        count(t.realloc_calls),
        size_exact(t.bytes_allocated)
    );
    let _ = writeln!(
        out,
        "  frees         {} calls; {} of {} blocks released",
        count(t.free_calls),
        count(t.blocks_freed),
        count(t.blocks_allocated)
    );
    let _ = writeln!(
        out,
        "  peak heap     {} at {}",
        size_exact(t.peak_bytes),
        duration_ms(t.peak_at_ms)
    );
    let live_label = if p.exit == Exit::Running {
        "live now    "
    } else {
        "live at exit"
    };
    let _ = writeln!(
        out,
        "  {live_label}  {} in {}",
        size_exact(t.live_bytes),
        plural(t.live_blocks, "block")
    );
    if t.mmap_live_bytes > 0 {
        let _ = writeln!(
            out,
            "  mmap live     {} ({} anonymous, {} file-backed)",
            size_exact(t.mmap_live_bytes),
            size(t.mmap_anonymous_bytes),
            size(t.mmap_file_bytes)
        );
    }
    if let Some(rss) = t.rss_bytes {
        let _ = writeln!(out, "  rss           {} (latest sample)", size_exact(rss));
    }
    if t.unknown_frees > 0 || t.duplicate_allocs > 0 {
        let _ = writeln!(
            out,
            "  anomalies     {} frees of unknown addresses, {} allocations of live addresses",
            count(t.unknown_frees),
            count(t.duplicate_allocs)
        );
    }
    process_analysis(out, p);
    let live_title = if p.exit == Exit::Running {
        "live bytes now"
    } else {
        "live bytes at exit"
    };
    let live_sites: Vec<&SiteReport> = p.sites.iter().filter(|s| s.live_bytes > 0).collect();
    if !live_sites.is_empty() {
        let _ = writeln!(out, "\n  Top {} sites by {live_title}", live_sites.len());
        for (i, s) in live_sites.iter().enumerate() {
            site(out, i + 1, s, SiteFocus::Live);
        }
    }
    if !p.sites_by_bytes_allocated.is_empty() {
        let _ = writeln!(
            out,
            "\n  Top {} sites by bytes allocated (of {})",
            p.sites_by_bytes_allocated.len(),
            count(p.site_count as u64)
        );
        for (i, s) in p.sites_by_bytes_allocated.iter().enumerate() {
            site(out, i + 1, s, SiteFocus::Allocated);
        }
    }
    out.push('\n');
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SiteFocus {
    Live,
    Allocated,
}

fn site(out: &mut String, rank: usize, s: &SiteReport, focus: SiteFocus) {
    let head = match focus {
        SiteFocus::Live => format!(
            "{} live in {}",
            size_exact(s.live_bytes),
            plural(s.live_blocks, "block")
        ),
        SiteFocus::Allocated => format!(
            "{} allocated in {}",
            size_exact(s.bytes_allocated),
            plural(s.alloc_calls, "call")
        ),
    };
    let rest = match focus {
        SiteFocus::Live => format!(
            "{}, {} allocated, {} at peak",
            plural(s.alloc_calls, "call"),
            size(s.bytes_allocated),
            size(s.peak_bytes)
        ),
        SiteFocus::Allocated => format!(
            "{} live, {} at peak",
            size(s.live_bytes),
            size(s.peak_bytes)
        ),
    };
    let _ = writeln!(out, "  #{rank:<3} {head}  ({rest})");
    site_details(out, s);
    if s.frames.is_empty() {
        let _ = writeln!(out, "         (stack not received)");
    }
    for f in s.frames.iter().take(FRAMES_SHOWN) {
        let _ = writeln!(out, "         at {}", frame(f));
    }
    if s.frames.len() > FRAMES_SHOWN {
        let _ = writeln!(
            out,
            "         ... {} more frames",
            s.frames.len() - FRAMES_SHOWN
        );
    }
}

fn frame(f: &Frame) -> String {
    let mut text = if f.function == "??" {
        format!("?? {}", f.address)
    } else {
        f.function.clone()
    };
    if let Some(file) = &f.file {
        let _ = match f.line {
            Some(line) => write!(text, " ({file}:{line})"),
            None => write!(text, " ({file})"),
        };
    }
    if let Some(module) = &f.module {
        let base = Path::new(module)
            .file_name()
            .map_or(module.as_str(), |n| n.to_str().unwrap_or(module));
        let _ = write!(text, " [{base}]");
    }
    text
}

fn summary(out: &mut String, processes: &[ProcessReport]) {
    let title = format!(
        "== Summary: {} ",
        plural(processes.len() as u64, "process image")
    );
    let _ = writeln!(
        out,
        "{title}{}",
        "=".repeat(78usize.saturating_sub(title.len()))
    );
    let _ = writeln!(
        out,
        "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}  command",
        "pid", "exit", "peak", "live", "allocated"
    );
    for p in processes {
        let command: String = p.command.chars().take(60).collect();
        let _ = writeln!(
            out,
            "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}  {command}",
            p.pid,
            exit_text(&p.exit),
            size(p.totals.peak_bytes),
            size(p.totals.live_bytes),
            size(p.totals.bytes_allocated),
        );
    }
    let sum = |f: fn(&ProcessReport) -> u64| processes.iter().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}",
        "total",
        "",
        "",
        size(sum(|p| p.totals.live_bytes)),
        size(sum(|p| p.totals.bytes_allocated)),
    );
    let lost = sum(|p| p.totals.lost_events);
    if lost > 0 {
        let _ = writeln!(
            out,
            "  !! {} events were dropped in total: the report undercounts !!",
            count(lost)
        );
    }
}
