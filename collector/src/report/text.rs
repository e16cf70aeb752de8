//! The human-readable report.

use std::fmt::Write;
use std::path::Path;

use super::estimates::Figure;
use super::text_analysis::{process_analysis, site_details};
use super::units::{count, duration_ms, size, size_exact};
use super::{Amount, Frame, Leaks, ProcessReport, Report, SiteReport};
use crate::analysis::attribution::describe;
use crate::leakcheck::select::is_helper;
use crate::state::Exit;
use crate::symbolize::python::PYTHON_MODULE;

/// Frames shown per site.
const FRAMES_SHOWN: usize = 6;
/// Native frames shown above the Python frames of a Python stack.
const NATIVE_ABOVE_PYTHON: usize = 2;

/// Renders the whole report as text, short-lived helpers folded.
pub fn render(report: &Report) -> String {
    render_with(report, true)
}

/// Renders the whole report as text. With `fold_helpers` and more than one
/// process, short-lived helper processes ([`is_helper`]) get one line in all
/// instead of a section each (they stay in the JSON report).
pub fn render_with(report: &Report, fold_helpers: bool) -> String {
    let mut out = String::new();
    if report.processes.is_empty() {
        out.push_str("memcollect: no process was profiled (did the shim load? is the program statically linked?)\n");
        return out;
    }
    let fold = fold_helpers && report.processes.len() > 1;
    let helper = |p: &ProcessReport| fold && is_helper(p);
    for p in report.processes.iter().filter(|p| !helper(p)) {
        process(&mut out, p);
    }
    let helpers: Vec<&ProcessReport> = report.processes.iter().filter(|p| helper(p)).collect();
    if !helpers.is_empty() {
        helper_line(&mut out, &helpers);
    }
    summary(&mut out, &report.processes, fold);
    out
}

/// One line for all the helper processes: how many, of which programs.
fn helper_line(out: &mut String, helpers: &[&ProcessReport]) {
    let mut names: Vec<(String, usize)> = Vec::new();
    for p in helpers {
        let name = program_name(p);
        match names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => names.push((name, 1)),
        }
    }
    let list: Vec<String> = names
        .iter()
        .map(|(n, c)| {
            if *c == 1 {
                n.clone()
            } else {
                format!("{n} x{c}")
            }
        })
        .collect();
    let execs = helpers.iter().filter(|p| p.exit == Exit::Exec).count();
    let peak = helpers
        .iter()
        .map(|p| p.totals.peak_bytes)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "== {} helper process image{} ({}): {} replaced by exec, the others exited 0 with no leak; peak <= {} each (--show-helpers for sections)\n",
        helpers.len(),
        if helpers.len() == 1 { "" } else { "s" },
        list.join(", "),
        execs,
        size(peak)
    );
}

/// The file name of a process's executable (its command's first word if unknown).
fn program_name(p: &ProcessReport) -> String {
    let exe = if p.exe.is_empty() {
        p.command.split(' ').next().unwrap_or("")
    } else {
        p.exe.as_str()
    };
    Path::new(exe)
        .file_name()
        .map_or_else(|| exe.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// `B in N blocks`, memcheck style.
fn amount(a: Amount) -> String {
    format!("{} in {}", size_exact(a.bytes), plural(a.blocks, "block"))
}

/// The process's leak classes, like memcheck's LEAK SUMMARY.
fn leak_summary(out: &mut String, p: &ProcessReport) {
    let Some(scan) = &p.leak_scan else {
        if p.exit != Exit::Running && p.exit != Exit::Exec && p.totals.live_blocks > 0 {
            let _ = writeln!(
                out,
                "  leak classes  none: no exit scan (the process ended by `_exit`, by a signal or with its stream cut); blocks live at exit are listed as such"
            );
        }
        return;
    };
    let l = &p.leaks;
    let _ = writeln!(
        out,
        "  LEAK SUMMARY  (exit scan {:.1} ms: {} of roots, {} of heap)",
        scan.duration_ms,
        size(scan.root_bytes),
        size(scan.heap_bytes)
    );
    let _ = writeln!(out, "     definitely lost: {}", amount(l.definitely));
    let _ = writeln!(out, "     indirectly lost: {}", amount(l.indirectly));
    let _ = writeln!(out, "       possibly lost: {}", amount(l.possibly));
    let _ = writeln!(out, "     still reachable: {}", amount(l.reachable));
    let _ = writeln!(out, "          suppressed: {}", amount(l.suppressed));
    for u in &p.suppressions_used {
        let _ = writeln!(
            out,
            "        by {}: {} at {} ({})",
            u.name,
            amount(Amount {
                bytes: u.bytes,
                blocks: u.blocks
            }),
            plural(u.sites, "site"),
            u.origin
        );
    }
}

/// How a site's blocks were classified, for its heading.
fn site_class(s: &SiteReport) -> String {
    let Some(leak) = &s.leak else {
        return String::new();
    };
    let Some(c) = &leak.classes else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (name, a) in [
        ("definitely lost", c.definitely),
        ("indirectly lost", c.indirectly),
        ("possibly lost", c.possibly),
        ("reachable", c.reachable),
    ] {
        if a.blocks > 0 {
            parts.push(format!("{name} {}", amount(a)));
        }
    }
    if c.suppressed.blocks > 0 {
        parts.push(format!(
            "suppressed {}{}",
            amount(c.suppressed),
            leak.suppressed_by
                .as_deref()
                .map_or(String::new(), |n| format!(" by {n}"))
        ));
    }
    format!("         [{}]\n", parts.join("; "))
}

/// `n thing` or `n things`.
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{} {thing}s", count(n))
    }
}

fn exit_text(p: &ProcessReport) -> String {
    let text = exit_kind_text(&p.exit);
    if p.stream_cut_early {
        format!("{text}, stream cut early")
    } else {
        text
    }
}

fn exit_kind_text(exit: &Exit) -> String {
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

fn estimated_size(f: Figure) -> String {
    format!(
        "{} ± {}",
        size(f.value.max(0.0) as u64),
        size(f.ci99 as u64)
    )
}

fn estimated_count(f: Figure) -> String {
    format!(
        "{} ± {}",
        count(f.value.max(0.0) as u64),
        count(f.ci99 as u64)
    )
}

fn process(out: &mut String, p: &ProcessReport) {
    let t = &p.totals;
    let title = format!(
        "== pid {}  {}  [{}]  {} ",
        p.pid,
        p.command,
        exit_text(p),
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
            "  sampled: one record per {} on average; the counts below are of samples",
            size(p.sample_bytes)
        );
        if let Some(e) = &p.estimate {
            let _ = writeln!(
                out,
                "  estimated     {} allocated in {} calls; {} live in {} blocks (99 % intervals)",
                estimated_size(e.bytes_allocated),
                estimated_count(e.alloc_calls),
                estimated_size(e.live_bytes),
                estimated_count(e.live_blocks),
            );
        }
    }
    if t.lost_events > 0 {
        let _ = writeln!(
            out,
            "  !! {} EVENTS WERE DROPPED by the shim: every number below undercounts !!",
            count(t.lost_events)
        );
    }
    if t.queue_wait_ns > 0 {
        let _ = writeln!(
            out,
            "  queue wait    the program waited {:.1} ms for room in the shim's queue \
             (lossless back-pressure; included in its run time)",
            t.queue_wait_ns as f64 / 1e6
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
    leak_summary(out, p);
    process_analysis(out, p);
    if !p.leak_sites.is_empty() {
        let _ = writeln!(
            out,
            "\n  Leaking sites ({} with definitely, indirectly or possibly lost blocks, most lost first)",
            p.leak_sites.len()
        );
        for (i, s) in p.leak_sites.iter().enumerate() {
            site(out, i + 1, s, SiteFocus::Lost);
        }
    }
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
    groups(out, p);
    out.push('\n');
}

/// `--group`: the top groups, most live bytes first, then most allocated.
fn groups(out: &mut String, p: &ProcessReport) {
    let Some(by) = p.group_by else {
        return;
    };
    let _ = writeln!(
        out,
        "\n  Top {} {} by live bytes, then bytes allocated (all sites summed by attributed frame)",
        p.groups.len(),
        by.plural()
    );
    for (i, g) in p.groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "  #{:<3} {} allocated in {}, {} live in {}, {} at peak, {}",
            i + 1,
            size(g.bytes_allocated),
            plural(g.alloc_calls, "call"),
            size(g.live_bytes),
            plural(g.live_blocks, "block"),
            size(g.peak_bytes),
            plural(g.sites, "site"),
        );
        match &g.module {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "         {} [{}]",
                    g.key,
                    crate::analysis::attribution::base_name(m)
                );
            }
            None => {
                let _ = writeln!(out, "         {}", g.key);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SiteFocus {
    Live,
    Allocated,
    Lost,
}

fn site(out: &mut String, rank: usize, s: &SiteReport, focus: SiteFocus) {
    let head = match focus {
        SiteFocus::Lost => {
            let lost = s
                .leak
                .as_ref()
                .and_then(|l| l.classes)
                .map(|c| c.lost())
                .unwrap_or_default();
            format!(
                "{} lost in {} (site {})",
                size_exact(lost.bytes),
                plural(lost.blocks, "block"),
                s.id
            )
        }
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
        SiteFocus::Live | SiteFocus::Lost => format!(
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
    if let Some(e) = &s.estimate {
        let _ = writeln!(
            out,
            "         estimated: {} allocated in {} calls, {} live",
            estimated_size(e.bytes_allocated),
            estimated_count(e.alloc_calls),
            estimated_size(e.live_bytes),
        );
    }
    if focus != SiteFocus::Allocated {
        out.push_str(&site_class(s));
    }
    site_details(out, s);
    if s.frames.is_empty() {
        let _ = writeln!(out, "         (stack not received)");
    }
    let python = s.frames.iter().position(is_python);
    let native_shown = python.map_or(FRAMES_SHOWN, |p| p.min(NATIVE_ABOVE_PYTHON));
    for f in s.frames.iter().take(native_shown) {
        let _ = writeln!(out, "         at {}", describe(f));
    }
    let mut shown = native_shown;
    if let Some(p) = python {
        // The interpreter's frames between the allocation and the Python
        // code are elided: the Python frames are what the program wrote.
        if p > native_shown {
            let _ = writeln!(out, "         ... {} interpreter frames", p - native_shown);
        }
        for f in s.frames[p..]
            .iter()
            .filter(|f| is_python(f))
            .take(FRAMES_SHOWN)
        {
            let _ = writeln!(out, "         at {}", describe(f));
            shown += 1;
        }
    }
    if s.frames.len() > shown {
        let _ = writeln!(out, "         ... {} more frames", s.frames.len() - shown);
    }
}

fn is_python(f: &Frame) -> bool {
    f.module.as_deref() == Some(PYTHON_MODULE)
}

fn summary(out: &mut String, processes: &[ProcessReport], fold: bool) {
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
        "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}  {:>10}  command",
        "pid", "exit", "peak", "live", "lost", "allocated"
    );
    let lost_text = |p: &ProcessReport| {
        if p.leak_scan.is_some() {
            size(p.leaks.lost().bytes)
        } else {
            "-".to_owned()
        }
    };
    let mut helpers: Vec<&ProcessReport> = Vec::new();
    for p in processes {
        if fold && is_helper(p) {
            helpers.push(p);
            continue;
        }
        let command: String = p.command.chars().take(60).collect();
        let _ = writeln!(
            out,
            "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}  {:>10}  {command}",
            p.pid,
            exit_text(p),
            size(p.totals.peak_bytes),
            size(p.totals.live_bytes),
            lost_text(p),
            size(p.totals.bytes_allocated),
        );
    }
    if !helpers.is_empty() {
        let _ = writeln!(
            out,
            "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}  {:>10}  (helpers: shells, exec'ed images, tiny clean processes)",
            helpers.len(),
            "helper images",
            size(helpers.iter().map(|p| p.totals.peak_bytes).max().unwrap_or(0)),
            size(helpers.iter().map(|p| p.totals.live_bytes).sum()),
            "0 B",
            size(helpers.iter().map(|p| p.totals.bytes_allocated).sum()),
        );
    }
    let sum = |f: fn(&ProcessReport) -> u64| processes.iter().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "  {:>8}  {:<26}  {:>10}  {:>10}  {:>10}  {:>10}",
        "total",
        "",
        size(sum(|p| p.totals.peak_bytes)),
        size(sum(|p| p.totals.live_bytes)),
        size(sum(|p| p.leaks.lost().bytes)),
        size(sum(|p| p.totals.bytes_allocated)),
    );
    let t = processes.iter().fold(Leaks::default(), |mut t, p| {
        for (a, b) in [
            (&mut t.definitely, p.leaks.definitely),
            (&mut t.indirectly, p.leaks.indirectly),
            (&mut t.possibly, p.leaks.possibly),
            (&mut t.reachable, p.leaks.reachable),
            (&mut t.suppressed, p.leaks.suppressed),
        ] {
            a.bytes += b.bytes;
            a.blocks += b.blocks;
        }
        t
    });
    let _ = writeln!(
        out,
        "  leaks across the tree: definitely lost {}, indirectly lost {}, possibly lost {}, still reachable {}, suppressed {}",
        amount(t.definitely),
        amount(t.indirectly),
        amount(t.possibly),
        amount(t.reachable),
        amount(t.suppressed)
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
