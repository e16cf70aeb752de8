//! Building a [`Report`] from the registry.
//!
//! Each session is locked only long enough to copy its numbers and the raw
//! stacks of the sites shown; symbolization happens afterwards, unlocked.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use memshim_proto::StackId;

use super::analyze::{add_usage, analyze, histogram, site_id, sort_usage};
use super::early::EarlyReports;
use super::{
    estimates, leaks, Amount, LeakScanInfo, ProcessReport, Report, SiteLeak, SiteRef, SiteReport,
    SuppressionUse, Totals, Usage, REPORT_VERSION,
};
use crate::analysis::attribution::{attributed_frame, attributed_module, describe};
use crate::analysis::categories::{Categories, UNCATEGORIZED};
use crate::analysis::grouping::{GroupBy, Grouper};
use crate::leakcheck::suppressions::{Kinds, Suppressions};
use crate::registry::Registry;
use crate::state::modules::ModuleMap;
use crate::state::{Exit, Session, Site};
use crate::symbolize::{SymbolCache, Symbolizer};

/// What to put in a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// Sites per list.
    pub top: usize,
    /// Only the process images with this pid.
    pub pid: Option<u32>,
    /// User categories to sum the sites by.
    pub categories: Option<Arc<Categories>>,
    /// Leak suppressions (user files and the default set), if any.
    pub suppressions: Option<Arc<Suppressions>>,
    /// Sum every site by function, file or module (`--group`).
    pub group: Option<GroupBy>,
}

impl ReportOptions {
    /// The top `top` sites of the processes `pid` selects, without categories.
    pub fn new(top: usize, pid: Option<u32>) -> Self {
        ReportOptions {
            top,
            pid,
            categories: None,
            suppressions: None,
            group: None,
        }
    }
}

/// A site chosen for the report, before symbolization.
struct SiteDraft {
    report: SiteReport,
    stack: Option<Arc<[u64]>>,
}

/// A process copied out of its session, before symbolization.
pub(super) struct ProcessDraft {
    report: ProcessReport,
    by_live: Vec<SiteDraft>,
    by_allocated: Vec<SiteDraft>,
    modules: ModuleMap,
    refs: HashMap<String, Option<Arc<[u64]>>>,
    /// Every site's stack and figures, when categories are asked for.
    all_sites: Vec<(Option<Arc<[u64]>>, Usage)>,
    /// Sites with lost blocks, or blocks a suppression may silence.
    leak_candidates: Vec<SiteDraft>,
}

/// A process's part of the report: made ahead, or drafted now and
/// symbolized once every process is drafted.
enum Part {
    Made(Box<ProcessReport>),
    Draft(Box<ProcessDraft>),
}

impl Part {
    fn pid(&self) -> u32 {
        match self {
            Part::Made(report) => report.pid,
            Part::Draft(draft) => draft.report.pid,
        }
    }
}

/// [`finish`] with what `options` asks for.
pub(super) fn finish_for(
    draft: ProcessDraft,
    symbolizer: &mut Symbolizer<'_>,
    options: &ReportOptions,
) -> ProcessReport {
    finish(
        draft,
        symbolizer,
        options.categories.as_deref(),
        options.suppressions.as_deref(),
        options.group,
        options.top,
    )
}

/// Whether `options` selects `session`'s process.
pub(super) fn selects(options: &ReportOptions, session: &Session) -> bool {
    options.pid.is_none_or(|pid| pid == session.hello().pid)
}

/// The draft of `session` for `options`, at `now_ns` (for a running one).
pub(super) fn draft_for(session: &Session, options: &ReportOptions, now_ns: u64) -> ProcessDraft {
    let watched = Kinds(Kinds::LOST.0 | options.suppressions.as_ref().map_or(0, |s| s.kinds().0));
    draft(
        session,
        options.top,
        now_ns,
        options.categories.is_some() || options.group.is_some(),
        watched,
    )
}

/// Builds the report of every session in `registry` that `options` selects.
pub fn build_report(registry: &Registry, cache: &SymbolCache, options: &ReportOptions) -> Report {
    build_report_with(registry, cache, options, None)
}

/// [`build_report`], using the reports in `early` that are still valid.
pub fn build_report_with(
    registry: &Registry,
    cache: &SymbolCache,
    options: &ReportOptions,
    early: Option<&EarlyReports>,
) -> Report {
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut parts: Vec<(u64, Part)> = registry
        .sessions()
        .iter()
        .filter_map(|handle| {
            let session = handle.lock();
            if !selects(options, &session) {
                return None;
            }
            let part = match early.and_then(|early| early.take(handle, &session, options)) {
                Some(report) => Part::Made(Box::new(report)),
                None => Part::Draft(Box::new(draft_for(&session, options, now_ns))),
            };
            Some((session.hello().start_unix_ns, part))
        })
        .collect();
    parts.sort_by_key(|(start, part)| (*start, part.pid()));
    let mut symbolizer = Symbolizer::new(cache);
    let processes = parts
        .into_iter()
        .map(|(_, part)| match part {
            Part::Made(report) => *report,
            Part::Draft(draft) => finish_for(*draft, &mut symbolizer, options),
        })
        .collect();
    Report {
        version: REPORT_VERSION,
        processes,
    }
}

/// Applies the suppressions to the sites with leaks (symbolizing them),
/// fixes the process's classes, and returns the sites' final leak entries
/// and the sites still leaking, most lost bytes first.
fn suppress_leaks(
    report: &mut ProcessReport,
    candidates: Vec<SiteDraft>,
    symbolizer: &mut Symbolizer<'_>,
    modules: &ModuleMap,
    suppressions: Option<&Suppressions>,
    top: usize,
) -> (HashMap<String, Option<SiteLeak>>, Vec<SiteReport>) {
    let mut entries = HashMap::new();
    let mut leaking = Vec::new();
    let mut used: HashMap<&str, SuppressionUse> = HashMap::new();
    for mut site in candidates {
        let Some(before) = site.report.leak.as_ref().and_then(|l| l.classes) else {
            continue;
        };
        if let Some(stack) = &site.stack {
            site.report.frames = symbolizer.stack(Some(report.pid), modules, stack);
        }
        let mut after = before;
        let mut by = None;
        if let Some(s) = suppressions.and_then(|s| s.find(&site.report.frames, Kinds::of(&before)))
        {
            let moved = leaks::suppress(&mut after, s.kinds);
            let u = used
                .entry(s.name.as_str())
                .or_insert_with(|| SuppressionUse {
                    name: s.name.clone(),
                    origin: s.origin.clone(),
                    sites: 0,
                    bytes: 0,
                    blocks: 0,
                });
            u.sites += 1;
            u.bytes += moved.bytes;
            u.blocks += moved.blocks;
            by = Some(s.name.as_str());
            leaks::replace(&mut report.leaks, &before, &after);
        }
        site.report.leak = leaks::site_leak(&after, by);
        entries.insert(site.report.id.clone(), site.report.leak.clone());
        if after.lost().blocks > 0 {
            leaking.push(site.report);
        }
    }
    leaking.sort_by(|a, b| {
        let lost = |s: &SiteReport| {
            s.leak
                .as_ref()
                .and_then(|l| l.classes)
                .map_or(0, |c| c.lost().bytes)
        };
        lost(b).cmp(&lost(a)).then_with(|| a.id.cmp(&b.id))
    });
    leaking.truncate(top);
    let mut used: Vec<SuppressionUse> = used.into_values().collect();
    used.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    report.suppressions_used = used;
    (entries, leaking)
}

fn finish(
    draft: ProcessDraft,
    symbolizer: &mut Symbolizer<'_>,
    categories: Option<&Categories>,
    suppressions: Option<&Suppressions>,
    group: Option<GroupBy>,
    top: usize,
) -> ProcessReport {
    let ProcessDraft {
        mut report,
        mut by_live,
        mut by_allocated,
        modules,
        refs,
        all_sites,
        leak_candidates,
    } = draft;
    let pid = report.pid;
    let (entries, leaking) = suppress_leaks(
        &mut report,
        leak_candidates,
        symbolizer,
        &modules,
        suppressions,
        top,
    );
    for s in by_live.iter_mut().chain(by_allocated.iter_mut()) {
        if let Some(entry) = entries.get(&s.report.id) {
            s.report.leak = entry.clone();
        }
    }
    report.leak_sites = leaking;
    let resolved: HashMap<String, SiteRef> = refs
        .into_iter()
        .map(|(id, stack)| {
            let frames =
                stack.map_or_else(Vec::new, |st| symbolizer.stack(Some(pid), &modules, &st));
            let (function, location) = attributed_frame(&frames)
                .map_or(("??".into(), "(stack not received)".into()), |f| {
                    (f.function.clone(), describe(f))
                });
            let r = SiteRef {
                site: id.clone(),
                function,
                location,
            };
            (id, r)
        })
        .collect();
    let fill = |r: &mut SiteRef| {
        if let Some(found) = resolved.get(&r.site) {
            *r = found.clone();
        }
    };
    report
        .peak
        .owners
        .iter_mut()
        .for_each(|o| fill(&mut o.site));
    report.growth.iter_mut().for_each(|g| fill(&mut g.site));
    report
        .recommendations
        .iter_mut()
        .for_each(|x| fill(&mut x.site));
    report
        .fragmentation
        .top_internal
        .iter_mut()
        .for_each(|w| fill(&mut w.site));
    let mut site_category: HashMap<String, String> = HashMap::new();
    let mut grouper = group.map(Grouper::new);
    if categories.is_some() || grouper.is_some() {
        let mut groups: HashMap<String, Usage> = HashMap::new();
        for (stack, usage) in all_sites {
            let frames =
                stack.map_or_else(Vec::new, |st| symbolizer.stack(Some(pid), &modules, &st));
            if let Some(g) = grouper.as_mut() {
                g.add(&frames, &usage);
            }
            let Some(categories) = categories else {
                continue;
            };
            let name = categories.classify(&frames).unwrap_or(UNCATEGORIZED);
            site_category.insert(usage.name.clone(), name.to_owned());
            groups
                .entry(name.to_owned())
                .or_insert_with(|| Usage {
                    name: name.to_owned(),
                    ..Usage::default()
                })
                .add(&usage);
        }
        if categories.is_some() {
            let mut groups: Vec<Usage> = groups.into_values().collect();
            sort_usage(&mut groups);
            report.categories = groups;
        }
    }
    report.group_by = group;
    report.groups = grouper.map_or_else(Vec::new, |g| g.finish(top));
    let mut symbolize = |sites: Vec<SiteDraft>| -> Vec<SiteReport> {
        sites
            .into_iter()
            .map(|mut s| {
                if let Some(stack) = &s.stack {
                    s.report.frames = symbolizer.stack(Some(pid), &modules, stack);
                }
                s.report.category = site_category.get(&s.report.id).cloned();
                s.report
            })
            .collect()
    };
    report.sites = symbolize(by_live);
    report.sites_by_bytes_allocated = symbolize(by_allocated);
    report
}

/// A key that sorts sites by two figures, largest first, then by id.
type SiteOrder = (Reverse<u64>, Reverse<u64>, StackId);

fn draft(
    session: &Session,
    top: usize,
    now_ns: u64,
    with_all_sites: bool,
    watched: Kinds,
) -> ProcessDraft {
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
        queue_wait_ns: stats.map_or(0, |s| s.queue_wait_ns),
        unknown_frees: counters.unknown_frees,
        duplicate_allocs: counters.duplicate_allocs,
        rss_bytes: stats.map(|s| s.rss_bytes),
    };
    let seconds = (duration_ns.max(1) as f64) / 1e9;
    let classified = if ended {
        leaks::classify(session)
    } else {
        None
    };
    let site_draft = |(&id, site): (&StackId, &Site)| SiteDraft {
        report: SiteReport {
            id: site_id(id),
            frames: Vec::new(),
            alloc_calls: site.alloc_calls,
            bytes_allocated: site.bytes_allocated,
            live_bytes: site.live_bytes,
            live_blocks: site.live_blocks,
            peak_bytes: heap.site_peak_bytes(site),
            leak: match &classified {
                Some((_, per_site)) => per_site.get(&id).and_then(|c| leaks::site_leak(c, None)),
                None => (ended && site.live_blocks > 0).then(|| SiteLeak {
                    class: "live_at_exit".into(),
                    bytes: site.live_bytes,
                    blocks: site.live_blocks,
                    classes: None,
                    suppressed_by: None,
                }),
            },
            size_histogram: histogram(&site.sizes, &site.size_dist, 0),
            lifetime_histogram: histogram(
                &site.lifetimes_ms,
                &site.lifetime_dist,
                site.live_blocks,
            ),
            usable_bytes: site.live_usable,
            internal_fragmentation_bytes: site.live_usable.saturating_sub(site.live_bytes),
            freed_blocks: site.freed_blocks,
            temporary_allocs: site.temporary,
            short_lived_allocs: site.short_lived,
            allocs_per_second: site.alloc_calls as f64 / seconds,
            realloc_grows: site.realloc_grows,
            max_realloc_chain: site.max_chain,
            module: session
                .stack(id)
                .and_then(|st| attributed_module(session.modules(), st))
                .map(str::to_owned),
            category: None,
            estimate: site.estimates.as_deref().map(|e| (*e).into()),
        },
        stack: session.stack(id).cloned(),
    };
    // Sorted by keys read once into the vector, beside the site: read from
    // the sites at every comparison, they missed the cache (cc1: 6,500
    // sites, a millisecond a sort). The ids are unique, so an unstable sort
    // orders as a stable one would.
    let sorted_by = |key: fn(&Site) -> (u64, u64)| {
        let mut keyed: Vec<(SiteOrder, &Site)> = heap
            .sites()
            .iter_by_index()
            .map(|(id, s)| {
                let (first, second) = key(s);
                ((Reverse(first), Reverse(second), id), s)
            })
            .collect();
        keyed.sort_unstable_by_key(|&(key, _)| key);
        keyed
    };
    let by_live = sorted_by(|s| (s.live_bytes, s.bytes_allocated))
        .iter()
        .take(top)
        .map(|&((_, _, id), s)| site_draft((&id, s)))
        .collect();
    let keyed = sorted_by(|s| (s.bytes_allocated, s.live_bytes));
    let sites: Vec<(&StackId, &Site)> = keyed.iter().map(|((_, _, id), s)| (id, *s)).collect();
    let by_allocated = sites.iter().take(top).copied().map(site_draft).collect();
    let leak_candidates = match &classified {
        Some((_, per_site)) => sites
            .iter()
            .filter(|(id, _)| {
                per_site
                    .get(id)
                    .is_some_and(|c| Kinds::of(c).0 & watched.0 != 0)
            })
            .copied()
            .map(site_draft)
            .collect(),
        None => Vec::new(),
    };
    let duration_ms = duration_ns / 1_000_000;
    let analysis = analyze(session, duration_ms, top);
    let all_sites = if with_all_sites {
        heap.sites()
            .iter()
            .map(|(&id, s)| {
                let mut u = Usage {
                    name: site_id(id),
                    ..Usage::default()
                };
                add_usage(&mut u, s, heap.site_peak_bytes(s));
                (session.stack(id).cloned(), u)
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = ProcessReport {
        pid: hello.pid,
        ppid: hello.ppid,
        forked_from: hello.forked_from,
        command: hello.argv.join(" "),
        exe: hello.exe.clone(),
        exit,
        stream_cut_early: session.stream_cut_early(),
        start_unix_ms: hello.start_unix_ns / 1_000_000,
        duration_ms,
        sample_bytes: hello.sample_bytes,
        totals,
        leaks: classified
            .as_ref()
            .map(|(total, _)| *total)
            .unwrap_or_default(),
        estimate: estimates::process(heap),
        leak_scan: session.leaks().done().then(|| {
            let (root_bytes, heap_bytes) = session.leaks().scanned_bytes();
            LeakScanInfo {
                duration_ms: session.leaks().duration_ns() as f64 / 1e6,
                root_bytes,
                heap_bytes,
            }
        }),
        suppressions_used: Vec::new(),
        leak_sites: Vec::new(),
        live_at_exit: if ended { live } else { Amount::default() },
        site_count: heap.sites().len(),
        sites: Vec::new(),
        sites_by_bytes_allocated: Vec::new(),
        growth: analysis.growth,
        fragmentation: analysis.fragmentation,
        recommendations: analysis.recommendations,
        timeline: session.timeline().samples().to_vec(),
        peak: analysis.peak,
        size_histogram: analysis.sizes,
        lifetime_histogram: analysis.lifetimes,
        allocation_rate: analysis.rate,
        by_module: analysis.by_module,
        categories: Vec::new(),
        group_by: None,
        groups: Vec::new(),
    };
    ProcessDraft {
        report,
        by_live,
        by_allocated,
        modules: session.modules().clone(),
        refs: analysis.refs,
        all_sites,
        leak_candidates,
    }
}
