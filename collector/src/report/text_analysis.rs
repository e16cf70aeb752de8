//! The analysis sections of the text report.

use std::fmt::Write;

use super::analysis::{Histogram, Usage};
use super::units::{count, size};
use super::{ProcessReport, SiteReport};
use crate::analysis::attribution::base_name;

/// Entries shown per analysis list in text.
const SHOWN: usize = 5;

fn percentiles(h: &Histogram, unit: &dyn Fn(u64) -> String) -> String {
    format!(
        "p50 {}, p90 {}, p99 {}, max {}",
        unit(h.p50),
        unit(h.p90),
        unit(h.p99),
        unit(h.max)
    )
}

fn ms(v: u64) -> String {
    format!("{} ms", count(v))
}

fn bytes(v: u64) -> String {
    size(v)
}

/// One line of distributions under a site.
pub fn site_details(out: &mut String, s: &SiteReport) {
    let mut line = format!("sizes {}", percentiles(&s.size_histogram, &bytes));
    let l = &s.lifetime_histogram;
    if l.count > 0 {
        let _ = write!(line, "; lifetimes {}", percentiles(l, &ms));
    }
    if l.censored > 0 {
        let _ = write!(line, " ({} live, censored)", count(l.censored));
    }
    if s.internal_fragmentation_bytes > 0 {
        let _ = write!(
            line,
            "; {} lost to rounding",
            size(s.internal_fragmentation_bytes)
        );
    }
    let _ = writeln!(out, "         {line}");
}

fn usage_lines(out: &mut String, title: &str, usage: &[Usage]) {
    if usage.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  {title}");
    for u in usage.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "    {:>10} live  {:>10} allocated  {:>10} at peak  {:>5} sites  {}",
            size(u.live_bytes),
            size(u.bytes_allocated),
            size(u.peak_bytes),
            count(u.sites),
            base_name(&u.name)
        );
    }
}

/// The process-level analysis: distributions, peak owners, fragmentation,
/// growth, recommendations, attribution.
pub fn process_analysis(out: &mut String, p: &ProcessReport) {
    if p.size_histogram.count > 0 {
        let _ = writeln!(
            out,
            "  sizes         {}",
            percentiles(&p.size_histogram, &bytes)
        );
    }
    let l = &p.lifetime_histogram;
    if l.count + l.censored > 0 {
        let _ = writeln!(
            out,
            "  lifetimes     {} ({} freed, {} still live: censored)",
            percentiles(l, &ms),
            count(l.count),
            count(l.censored)
        );
    }
    let r = &p.allocation_rate;
    if r.max_per_second > 0 {
        let _ = writeln!(
            out,
            "  alloc rate    mean {:.0}/s; per {} ms bin p50 {}/s, p99 {}/s, max {}/s",
            r.mean_per_second,
            r.bin_ms,
            count(r.p50_per_second),
            count(r.p99_per_second),
            count(r.max_per_second)
        );
    }
    let f = &p.fragmentation;
    let mut frag = format!(
        "internal {} ({:.1} % of {} usable)",
        size(f.internal_bytes),
        100.0 * f.internal_ratio,
        size(f.usable_bytes)
    );
    if let (Some(heap), Some(free)) = (f.heap_bytes, f.heap_free_bytes) {
        let _ = write!(
            frag,
            "; allocator holds {}, {} of it free",
            size(heap),
            size(free)
        );
    }
    if f.mmap_bytes > 0 {
        let _ = write!(frag, "; mmap {}", size(f.mmap_bytes));
    }
    let _ = writeln!(out, "  fragmentation {frag}");
    if !p.peak.owners.is_empty() {
        let _ = writeln!(
            out,
            "\n  Peak {} at {} ms held by",
            size(p.peak.bytes),
            count(p.peak.at_ms)
        );
        for o in &p.peak.owners {
            let _ = writeln!(
                out,
                "    {:>10} ({:>3.0} %)  {} live now  at {}",
                size(o.bytes),
                100.0 * o.share,
                size(o.live_bytes_now),
                o.site.location
            );
        }
    }
    if !p.growth.is_empty() {
        let _ = writeln!(out, "\n  Growth");
        for g in p.growth.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "    {:<6} {:<8} {:>+12}/s  r² {:.2} over {:.1} s, {} live (max {})  at {}",
                format!("{:?}", g.classification).to_lowercase(),
                format!("{:?}", g.severity).to_lowercase(),
                size(g.bytes_per_second.max(0.0) as u64),
                g.r2,
                g.duration_ms as f64 / 1000.0,
                size(g.live_bytes),
                size(g.max_bytes),
                g.site.location
            );
        }
    }
    if !p.recommendations.is_empty() {
        let _ = writeln!(out, "\n  Recommendations");
        for x in p.recommendations.iter().take(SHOWN) {
            let mut saves = Vec::new();
            if x.estimated_savings_bytes > 0 {
                saves.push(size(x.estimated_savings_bytes));
            }
            if x.estimated_savings_allocs_per_second > 0.0 {
                saves.push(format!(
                    "{:.0} allocations/s",
                    x.estimated_savings_allocs_per_second
                ));
            }
            let _ = writeln!(out, "    [{}, {}] {}", x.kind, x.difficulty, x.text);
            let _ = writeln!(
                out,
                "        saves ~{}; {}\n        at {}",
                saves.join(" and "),
                x.evidence,
                x.site.location
            );
        }
    }
    usage_lines(out, "By module", &p.by_module);
    usage_lines(out, "By category", &p.categories);
}
