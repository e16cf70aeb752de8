//! The analysis sections of a process report, computed under the session's
//! lock from its numbers (sites are referenced by id; they are symbolized
//! afterwards, see [`super::build`]).

use std::cmp::Reverse;
use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use memshim_proto::StackId;

use super::analysis::{
    AllocationRate, Fragmentation, Growth, Histogram, Peak, PeakOwner, Recommendation, SiteRef,
    SiteWaste, Usage,
};
use crate::analysis::attribution::attributed_module;
use crate::analysis::growth::{classify, Classification, Trend};
use crate::analysis::recommend::{advise, ProcessFacts, SiteFacts, WASTE_MIN_BYTES};
use crate::state::distribution::Distribution;
use crate::state::histogram::Log2Histogram;
use crate::state::series::Point;
use crate::state::{Session, Site};

/// Owners of the peak listed.
const PEAK_OWNERS: usize = 5;
/// Sites listed for internal waste.
const TOP_INTERNAL: usize = 5;

/// The analysis sections, plus the stacks of the sites they reference.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Peak and owners.
    pub peak: Peak,
    /// Flagged trends.
    pub growth: Vec<Growth>,
    /// Fragmentation figures.
    pub fragmentation: Fragmentation,
    /// Recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Process-wide sizes.
    pub sizes: Histogram,
    /// Process-wide lifetimes.
    pub lifetimes: Histogram,
    /// Allocation rate.
    pub rate: AllocationRate,
    /// By module.
    pub by_module: Vec<Usage>,
    /// Stacks of the referenced sites, by id.
    pub refs: HashMap<String, Option<Arc<[u64]>>>,
}

/// The hex id of a stack, as reported.
pub fn site_id(id: StackId) -> String {
    format!("{id:#x}")
}

/// A distribution as reported.
pub fn histogram(buckets: &Log2Histogram, dist: &Distribution, censored: u64) -> Histogram {
    Histogram {
        count: dist.count(),
        censored,
        min: dist.min(),
        p50: dist.percentile(0.5),
        p90: dist.percentile(0.9),
        p99: dist.percentile(0.99),
        max: dist.max(),
        mean: dist.mean(),
        exact: dist.is_exact(),
        buckets: buckets.buckets(),
    }
}

/// The growth verdict of a site at `now_ms`.
pub fn trend(site: &Site, now_ms: u64) -> Trend {
    let history = site.series.as_ref().map_or(&[][..], |s| s.points());
    classify(
        history,
        Point {
            t_ms: now_ms,
            bytes: site.live_bytes,
        },
    )
}

fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn allocation_rate(session: &Session, duration_ms: u64) -> AllocationRate {
    let rate = session.rate();
    let series = rate.bins();
    let bin_ms = rate.bin_ms();
    let mut per_second: Vec<u64> = series
        .iter()
        .map(|b| b.allocs * 1000 / bin_ms.max(1))
        .collect();
    per_second.sort_unstable();
    let allocs: u64 = series.iter().map(|b| b.allocs).sum();
    AllocationRate {
        mean_per_second: allocs as f64 * 1000.0 / duration_ms.max(1) as f64,
        bin_ms,
        p50_per_second: nearest_rank(&per_second, 0.5),
        p90_per_second: nearest_rank(&per_second, 0.9),
        p99_per_second: nearest_rank(&per_second, 0.99),
        max_per_second: per_second.last().copied().unwrap_or(0),
        series,
    }
}

fn fragmentation(session: &Session) -> Fragmentation {
    let heap = session.heap();
    let stats = session.latest_stats();
    let mappings = session.mappings();
    let (requested, usable) = (heap.live_bytes(), heap.live_usable());
    let internal = usable.saturating_sub(requested);
    Fragmentation {
        rss_bytes: stats.map(|s| s.rss_bytes),
        heap_bytes: stats.map(|s| s.heap_bytes),
        requested_bytes: requested,
        usable_bytes: usable,
        internal_bytes: internal,
        internal_ratio: if usable == 0 {
            0.0
        } else {
            internal as f64 / usable as f64
        },
        heap_in_use_bytes: stats.map(|s| s.heap_in_use_bytes),
        heap_free_bytes: stats.map(|s| s.heap_bytes.saturating_sub(s.heap_in_use_bytes)),
        external_ratio: stats
            .filter(|s| s.heap_bytes > 0)
            .map(|s| s.heap_bytes.saturating_sub(s.heap_in_use_bytes) as f64 / s.heap_bytes as f64),
        allocator_overhead_bytes: stats.map(|s| s.heap_in_use_bytes.saturating_sub(usable)),
        mmap_bytes: mappings.live_bytes(),
        mmap_anonymous_bytes: mappings.anonymous_bytes(),
        rss_other_bytes: stats.map(|s| {
            s.rss_bytes
                .saturating_sub(s.heap_bytes)
                .saturating_sub(mappings.anonymous_bytes())
        }),
        top_internal: Vec::new(),
        series: session.timeline().samples().to_vec(),
    }
}

fn site_ref(id: StackId) -> SiteRef {
    SiteRef {
        site: site_id(id),
        function: String::new(),
        location: String::new(),
    }
}

/// Computes the analysis sections of `session`, listing at most `top` entries each.
pub fn analyze(session: &Session, duration_ms: u64, top: usize) -> Analysis {
    let heap = session.heap();
    let now_ms = session.last_ts() / 1_000_000;
    let mut a = Analysis {
        sizes: histogram(session.sizes().0, session.sizes().1, 0),
        lifetimes: histogram(
            session.lifetimes().0,
            session.lifetimes().1,
            heap.live().len() as u64 + session.pending_reallocs() as u64,
        ),
        rate: allocation_rate(session, duration_ms),
        fragmentation: fragmentation(session),
        ..Analysis::default()
    };
    let mut referenced: Vec<StackId> = Vec::new();
    // In memory order: every list below is sorted with the id as the last key.
    let sites: Vec<(StackId, &Site)> = heap.sites().iter_by_index().collect();

    // Peak owners.
    let mut by_peak: Vec<(StackId, u64, &Site)> = sites
        .iter()
        .map(|&(id, s)| (id, heap.site_peak_bytes(s), s))
        .filter(|&(_, b, _)| b > 0)
        .collect();
    by_peak.sort_by_key(|&(id, b, _)| (Reverse(b), id));
    a.peak = Peak {
        bytes: heap.peak_bytes(),
        at_ms: heap.peak_ts() / 1_000_000,
        owners: by_peak
            .iter()
            .take(PEAK_OWNERS.min(top.max(1)))
            .map(|&(id, bytes, s)| {
                referenced.push(id);
                PeakOwner {
                    site: site_ref(id),
                    bytes,
                    share: bytes as f64 / heap.peak_bytes().max(1) as f64,
                    live_bytes_now: s.live_bytes,
                }
            })
            .collect(),
    };

    // Growth and recommendations.
    let process = ProcessFacts {
        duration_ms,
        peak_bytes: heap.peak_bytes(),
    };
    let mut growth: Vec<(StackId, Trend)> = Vec::new();
    let mut advice = Vec::new();
    for &(id, s) in &sites {
        let t = trend(s, now_ms);
        if t.classification != Classification::Stable {
            growth.push((id, t));
        }
        let facts = SiteFacts {
            alloc_calls: s.alloc_calls,
            live_bytes: s.live_bytes,
            live_usable: s.live_usable,
            peak_share: heap.site_peak_bytes(s),
            short_lived: s.short_lived,
            temporary: s.temporary,
            realloc_grows: s.realloc_grows,
            realloc_copied_bytes: s.realloc_copied_bytes,
            max_chain: s.max_chain,
            // Only the `size_classes` advice shows it, and only with this
            // much waste: not worth a percentile for every other site.
            p50_size: if s.live_usable.saturating_sub(s.live_bytes) >= WASTE_MIN_BYTES {
                s.size_dist.percentile(0.5)
            } else {
                0
            },
            trend: t,
        };
        advice.extend(advise(&facts, &process).into_iter().map(|x| (id, x)));
    }
    growth.sort_by(|(ia, a), (ib, b)| {
        (b.classification, b.severity)
            .cmp(&(a.classification, a.severity))
            .then(b.bytes_per_second.total_cmp(&a.bytes_per_second))
            .then(ia.cmp(ib))
    });
    a.growth = growth
        .into_iter()
        .take(top)
        .map(|(id, t)| {
            referenced.push(id);
            Growth {
                site: site_ref(id),
                bytes_per_second: t.bytes_per_second,
                recent_bytes_per_second: t.recent_bytes_per_second,
                r2: t.r2,
                severity: t.severity,
                classification: t.classification,
                duration_ms: t.duration_ms,
                points: t.points,
                first_bytes: t.first_bytes,
                live_bytes: t.last_bytes,
                max_bytes: t.max_bytes,
            }
        })
        .collect();
    advice.sort_by(|(ia, a), (ib, b)| {
        b.savings_bytes
            .cmp(&a.savings_bytes)
            .then(
                b.savings_allocs_per_second
                    .total_cmp(&a.savings_allocs_per_second),
            )
            .then(ia.cmp(ib))
    });
    a.recommendations = advice
        .into_iter()
        .take(top)
        .map(|(id, x)| {
            referenced.push(id);
            Recommendation {
                site: site_ref(id),
                kind: x.kind.into(),
                text: x.text,
                evidence: x.evidence,
                estimated_savings_bytes: x.savings_bytes,
                estimated_savings_allocs_per_second: x.savings_allocs_per_second,
                difficulty: x.difficulty.into(),
            }
        })
        .collect();

    // Internal waste by site.
    let mut waste: Vec<(StackId, &Site)> = sites
        .iter()
        .copied()
        .filter(|(_, s)| s.live_usable > s.live_bytes)
        .collect();
    waste.sort_by_key(|&(id, s)| (Reverse(s.live_usable - s.live_bytes), id));
    a.fragmentation.top_internal = waste
        .iter()
        .take(TOP_INTERNAL.min(top.max(1)))
        .map(|&(id, s)| {
            referenced.push(id);
            SiteWaste {
                site: site_ref(id),
                requested_bytes: s.live_bytes,
                usable_bytes: s.live_usable,
                internal_bytes: s.live_usable - s.live_bytes,
            }
        })
        .collect();

    // By module.
    // Hashed by a multiply, not SipHash: one lookup per site, thousands of them.
    let mut modules: FxHashMap<&str, Usage> = FxHashMap::default();
    for &(id, s) in &sites {
        let name = session
            .stack(id)
            .and_then(|stack| attributed_module(session.modules(), stack))
            .unwrap_or("(unknown)");
        let u = modules.entry(name).or_insert_with(|| Usage {
            name: name.to_owned(),
            ..Usage::default()
        });
        add_usage(u, s, heap.site_peak_bytes(s));
    }
    let mut by_module: Vec<Usage> = modules.into_values().collect();
    sort_usage(&mut by_module);
    a.by_module = by_module;

    for id in referenced {
        a.refs
            .entry(site_id(id))
            .or_insert_with(|| session.stack(id).cloned());
    }
    a
}

/// Adds a site's figures to a group.
pub fn add_usage(u: &mut Usage, s: &Site, peak_share: u64) {
    u.sites += 1;
    u.alloc_calls += s.alloc_calls;
    u.bytes_allocated += s.bytes_allocated;
    u.live_bytes += s.live_bytes;
    u.live_blocks += s.live_blocks;
    u.peak_bytes += peak_share;
}

/// Largest live first, then largest allocated, then by name.
pub fn sort_usage(v: &mut [Usage]) {
    v.sort_by(|a, b| {
        (Reverse(a.live_bytes), Reverse(a.bytes_allocated), &a.name).cmp(&(
            Reverse(b.live_bytes),
            Reverse(b.bytes_allocated),
            &b.name,
        ))
    });
}
