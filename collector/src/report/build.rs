//! Building a [`Report`] from the registry.
//!
//! Each session is locked only long enough to copy its numbers and the raw
//! stacks of the sites shown; symbolization happens afterwards, unlocked.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use memshim_proto::StackId;

use super::{
    Amount, Fragmentation, Leaks, ProcessReport, Report, SiteLeak, SiteReport, Totals,
    REPORT_VERSION,
};
use crate::registry::Registry;
use crate::state::modules::ModuleMap;
use crate::state::{Exit, Session, Site};
use crate::symbolize::{SymbolCache, Symbolizer};

/// What to put in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Sites per list.
    pub top: usize,
    /// Only the process images with this pid.
    pub pid: Option<u32>,
}

/// A site chosen for the report, before symbolization.
struct SiteDraft {
    report: SiteReport,
    stack: Option<Arc<[u64]>>,
}

/// A process copied out of its session, before symbolization.
struct ProcessDraft {
    report: ProcessReport,
    by_live: Vec<SiteDraft>,
    by_allocated: Vec<SiteDraft>,
    modules: ModuleMap,
}

/// Builds the report of every session in `registry` that `options` selects.
pub fn build_report(registry: &Registry, cache: &SymbolCache, options: &ReportOptions) -> Report {
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut drafts: Vec<(u64, ProcessDraft)> = registry
        .sessions()
        .iter()
        .filter_map(|handle| {
            let session = handle.lock();
            let hello = session.hello();
            if options.pid.is_some_and(|pid| pid != hello.pid) {
                return None;
            }
            Some((hello.start_unix_ns, draft(&session, options.top, now_ns)))
        })
        .collect();
    drafts.sort_by_key(|(start, d)| (*start, d.report.pid));
    let mut symbolizer = Symbolizer::new(cache);
    let processes = drafts
        .into_iter()
        .map(|(_, d)| finish(d, &mut symbolizer))
        .collect();
    Report {
        version: REPORT_VERSION,
        processes,
    }
}

fn finish(draft: ProcessDraft, symbolizer: &mut Symbolizer<'_>) -> ProcessReport {
    let ProcessDraft {
        mut report,
        by_live,
        by_allocated,
        modules,
    } = draft;
    let mut symbolize = |sites: Vec<SiteDraft>| -> Vec<SiteReport> {
        sites
            .into_iter()
            .map(|mut s| {
                if let Some(stack) = &s.stack {
                    s.report.frames = symbolizer.stack(&modules, stack);
                }
                s.report
            })
            .collect()
    };
    report.sites = symbolize(by_live);
    report.sites_by_bytes_allocated = symbolize(by_allocated);
    report
}

fn draft(session: &Session, top: usize, now_ns: u64) -> ProcessDraft {
    let hello = session.hello();
    let heap = session.heap();
    let counters = session.counters();
    let exit = session.exit();
    let ended = exit != Exit::Running;
    let duration_ns = if ended {
        session.last_ts()
    } else {
        now_ns
            .saturating_sub(hello.start_unix_ns)
            .max(session.last_ts())
    };
    let stats = session.latest_stats();
    let live = Amount {
        bytes: heap.live_bytes(),
        blocks: heap.live().len() as u64,
    };
    let mappings = session.mappings();
    let totals = Totals {
        alloc_calls: counters.alloc_calls,
        free_calls: counters.free_calls,
        realloc_calls: counters.realloc_calls,
        blocks_allocated: counters.blocks_allocated,
        blocks_freed: counters.blocks_freed,
        bytes_allocated: counters.bytes_allocated,
        peak_bytes: heap.peak_bytes(),
        peak_at_ms: heap.peak_ts() / 1_000_000,
        live_bytes: live.bytes,
        live_blocks: live.blocks,
        mmap_live_bytes: mappings.live_bytes(),
        mmap_anonymous_bytes: mappings.anonymous_bytes(),
        mmap_file_bytes: mappings.file_bytes(),
        mmap_ranges: mappings.range_count(),
        lost_events: counters.lost_events,
        unknown_frees: counters.unknown_frees,
        duplicate_allocs: counters.duplicate_allocs,
        rss_bytes: stats.map(|s| s.rss_bytes),
    };
    let site_draft = |(&id, site): (&StackId, &Site)| SiteDraft {
        report: SiteReport {
            id: format!("{id:#x}"),
            frames: Vec::new(),
            alloc_calls: site.alloc_calls,
            bytes_allocated: site.bytes_allocated,
            live_bytes: site.live_bytes,
            live_blocks: site.live_blocks,
            peak_bytes: heap.site_peak_bytes(site),
            leak: (ended && site.live_blocks > 0).then(|| SiteLeak {
                class: "live_at_exit".into(),
                bytes: site.live_bytes,
                blocks: site.live_blocks,
            }),
            size_histogram: site.sizes.buckets(),
            lifetime_histogram: site.lifetimes_ms.buckets(),
        },
        stack: session.stack(id).cloned(),
    };
    let mut sites: Vec<(&StackId, &Site)> = heap.sites().iter().collect();
    sites.sort_by_key(|(&id, s)| (Reverse(s.live_bytes), Reverse(s.bytes_allocated), id));
    let by_live = sites.iter().take(top).copied().map(site_draft).collect();
    sites.sort_by_key(|(&id, s)| (Reverse(s.bytes_allocated), Reverse(s.live_bytes), id));
    let by_allocated = sites.iter().take(top).copied().map(site_draft).collect();
    let report = ProcessReport {
        pid: hello.pid,
        ppid: hello.ppid,
        forked_from: hello.forked_from,
        command: hello.argv.join(" "),
        exe: hello.exe.clone(),
        exit,
        start_unix_ms: hello.start_unix_ns / 1_000_000,
        duration_ms: duration_ns / 1_000_000,
        sample_bytes: hello.sample_bytes,
        totals,
        leaks: Leaks::default(),
        live_at_exit: if ended { live } else { Amount::default() },
        site_count: heap.sites().len(),
        sites: Vec::new(),
        sites_by_bytes_allocated: Vec::new(),
        growth: Vec::new(),
        fragmentation: Fragmentation {
            rss_bytes: stats.map(|s| s.rss_bytes),
            heap_bytes: stats.map(|s| s.heap_bytes),
            requested_bytes: heap.live_bytes(),
            usable_bytes: heap.live_usable(),
        },
        recommendations: Vec::new(),
        timeline: session.timeline().samples().to_vec(),
    };
    ProcessDraft {
        report,
        by_live,
        by_allocated,
        modules: session.modules().clone(),
    }
}
