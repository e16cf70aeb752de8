//! Recommendations: rules over the per-site figures, each with its evidence,
//! an estimated saving and a difficulty.
//!
//! | kind | when | estimated saving |
//! |---|---|---|
//! | `fix_leak` | the site's growth is classified `leak` | its live bytes now |
//! | `pool` | ≥ [`POOL_MIN_BLOCKS`] blocks freed within 100 ms, ≥ [`POOL_MIN_RATE`]/s, ≥ half its allocations | those allocations per second |
//! | `reserve` | ≥ [`RESERVE_MIN_GROWS`] growing reallocs, chains of ≥ [`RESERVE_MIN_CHAIN`] | the bytes the intermediate blocks held (allocated and copied), and those reallocs per second |
//! | `size_classes` | live internal waste ≥ [`WASTE_MIN_BYTES`] and ≥ 25 % of the usable bytes | the waste |
//! | `stream` | the site held ≥ half of a peak ≥ [`STREAM_MIN_PEAK`], and ≤ 10 % of that now | its share of the peak minus what it holds now |

use super::growth::{Classification, Trend};
use crate::report::units::size;

/// Least short-lived blocks for `pool`.
pub const POOL_MIN_BLOCKS: u64 = 10_000;
/// Least short-lived blocks per second for `pool`.
pub const POOL_MIN_RATE: f64 = 1_000.0;
/// Least growing reallocs for `reserve`.
pub const RESERVE_MIN_GROWS: u64 = 16;
/// Least realloc chain length for `reserve`.
pub const RESERVE_MIN_CHAIN: u32 = 4;
/// Least internal waste for `size_classes`.
pub const WASTE_MIN_BYTES: u64 = 64 << 10;
/// Least process peak for `stream`.
pub const STREAM_MIN_PEAK: u64 = 1 << 20;

/// The figures of one site the rules look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteFacts {
    /// Allocations made here.
    pub alloc_calls: u64,
    /// Bytes live now.
    pub live_bytes: u64,
    /// Usable bytes live now.
    pub live_usable: u64,
    /// Live bytes at the process peak.
    pub peak_share: u64,
    /// Blocks freed within 100 ms.
    pub short_lived: u64,
    /// Blocks freed before their thread's next allocation.
    pub temporary: u64,
    /// Growing reallocs.
    pub realloc_grows: u64,
    /// Bytes carried over by the growing reallocs.
    pub realloc_copied_bytes: u64,
    /// Longest realloc chain.
    pub max_chain: u32,
    /// Median requested size (may be 0 where the site wastes less than
    /// [`WASTE_MIN_BYTES`]: only `size_classes` shows it).
    pub p50_size: u64,
    /// The growth verdict.
    pub trend: Trend,
}

/// The figures of the process the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Process duration so far, milliseconds.
    pub duration_ms: u64,
    /// Process peak of live bytes.
    pub peak_bytes: u64,
}

/// One recommendation, before the site is symbolized.
#[derive(Debug, Clone, PartialEq)]
pub struct Advice {
    /// Rule that fired.
    pub kind: &'static str,
    /// What to do.
    pub text: String,
    /// The numbers behind it.
    pub evidence: String,
    /// Bytes saved.
    pub savings_bytes: u64,
    /// Allocations per second avoided.
    pub savings_allocs_per_second: f64,
    /// `easy`, `medium` or `hard`.
    pub difficulty: &'static str,
}

/// The recommendations for one site (none for a healthy one).
pub fn advise(s: &SiteFacts, p: &ProcessFacts) -> Vec<Advice> {
    let seconds = (p.duration_ms.max(1) as f64) / 1000.0;
    let mut out = Vec::new();
    if s.trend.classification == Classification::Leak {
        out.push(Advice {
            kind: "fix_leak",
            text: "live memory from this site grows steadily: free the blocks once done, or bound the structure that keeps them".into(),
            evidence: format!(
                "+{}/s over {:.1} s (r² {:.2}), {} live now",
                size(s.trend.bytes_per_second.max(0.0) as u64),
                s.trend.duration_ms as f64 / 1000.0,
                s.trend.r2,
                size(s.live_bytes)
            ),
            savings_bytes: s.live_bytes,
            savings_allocs_per_second: 0.0,
            difficulty: "medium",
        });
    }
    let short_rate = s.short_lived as f64 / seconds;
    if s.short_lived >= POOL_MIN_BLOCKS
        && short_rate >= POOL_MIN_RATE
        && 2 * s.short_lived >= s.alloc_calls
        && s.trend.classification != Classification::Leak
    {
        let temporary = 2 * s.temporary >= s.short_lived;
        out.push(Advice {
            kind: "pool",
            text: if temporary {
                "blocks are freed before the next allocation: use a stack buffer or reuse one buffer".into()
            } else {
                "short-lived blocks churn at a high rate: reuse them from a pool or free list".into()
            },
            evidence: format!(
                "{} of {} blocks freed within 100 ms ({:.0}/s), {} freed before the next allocation",
                s.short_lived, s.alloc_calls, short_rate, s.temporary
            ),
            savings_bytes: 0,
            savings_allocs_per_second: short_rate,
            difficulty: if temporary { "easy" } else { "medium" },
        });
    }
    if s.realloc_grows >= RESERVE_MIN_GROWS && s.max_chain >= RESERVE_MIN_CHAIN {
        out.push(Advice {
            kind: "reserve",
            text: "blocks are grown step by step with realloc: reserve the final capacity up front, or grow geometrically".into(),
            evidence: format!(
                "{} growing reallocs, chains up to {} steps, {} carried over",
                s.realloc_grows,
                s.max_chain,
                size(s.realloc_copied_bytes)
            ),
            savings_bytes: s.realloc_copied_bytes,
            savings_allocs_per_second: s.realloc_grows as f64 / seconds,
            difficulty: "easy",
        });
    }
    let waste = s.live_usable.saturating_sub(s.live_bytes);
    if waste >= WASTE_MIN_BYTES && 4 * waste >= s.live_usable {
        out.push(Advice {
            kind: "size_classes",
            text: "the allocator rounds these requests up a lot: size them to its classes, or allocate them from an arena or slab".into(),
            evidence: format!(
                "{} requested in {} usable: {} ({:.0} %) wasted; median request {} B",
                size(s.live_bytes),
                size(s.live_usable),
                size(waste),
                100.0 * waste as f64 / s.live_usable as f64,
                s.p50_size
            ),
            savings_bytes: waste,
            savings_allocs_per_second: 0.0,
            difficulty: "medium",
        });
    }
    if p.peak_bytes >= STREAM_MIN_PEAK
        && 2 * s.peak_share >= p.peak_bytes
        && 10 * s.live_bytes <= s.peak_share
    {
        out.push(Advice {
            kind: "stream",
            text: "the process peak is this site's temporary buffer: process the data in chunks (stream) instead of holding it all".into(),
            evidence: format!(
                "held {} of the {} peak ({:.0} %), {} live now",
                size(s.peak_share),
                size(p.peak_bytes),
                100.0 * s.peak_share as f64 / p.peak_bytes as f64,
                size(s.live_bytes)
            ),
            savings_bytes: s.peak_share - s.live_bytes,
            savings_allocs_per_second: 0.0,
            difficulty: "medium",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::growth::{classify, Severity};
    use crate::state::series::Point;

    fn stable() -> Trend {
        classify(&[], Point { t_ms: 0, bytes: 0 })
    }

    fn healthy() -> SiteFacts {
        SiteFacts {
            alloc_calls: 1_000,
            live_bytes: 1_000,
            live_usable: 1_200,
            peak_share: 1_000,
            short_lived: 100,
            temporary: 10,
            realloc_grows: 3,
            realloc_copied_bytes: 100,
            max_chain: 3,
            p50_size: 1,
            trend: stable(),
        }
    }

    const PROC: ProcessFacts = ProcessFacts {
        duration_ms: 2_000,
        peak_bytes: 10_000,
    };

    fn kinds(s: &SiteFacts, p: &ProcessFacts) -> Vec<&'static str> {
        advise(s, p).iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_healthy_site_gets_nothing() {
        assert!(advise(&healthy(), &PROC).is_empty());
    }

    #[test]
    fn each_rule_fires_with_its_saving() {
        let churn = SiteFacts {
            alloc_calls: 200_000,
            short_lived: 200_000,
            temporary: 0,
            ..healthy()
        };
        let a = advise(&churn, &PROC);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].kind, a[0].difficulty), ("pool", "medium"));
        assert_eq!(a[0].savings_allocs_per_second, 100_000.0);

        let chain = SiteFacts {
            realloc_grows: 20,
            max_chain: 20,
            realloc_copied_bytes: 5_000,
            ..healthy()
        };
        let a = advise(&chain, &PROC);
        assert_eq!((a[0].kind, a[0].savings_bytes), ("reserve", 5_000));
        assert_eq!(a[0].savings_allocs_per_second, 10.0);

        let waste = SiteFacts {
            live_bytes: 100 << 10,
            live_usable: 200 << 10,
            ..healthy()
        };
        let a = advise(&waste, &PROC);
        assert_eq!((a[0].kind, a[0].savings_bytes), ("size_classes", 100 << 10));

        let spike = SiteFacts {
            peak_share: 50 << 20,
            live_bytes: 0,
            live_usable: 0,
            ..healthy()
        };
        let p = ProcessFacts {
            duration_ms: 1_000,
            peak_bytes: 60 << 20,
        };
        let a = advise(&spike, &p);
        assert_eq!((a[0].kind, a[0].savings_bytes), ("stream", 50 << 20));
        assert!(kinds(&spike, &PROC).is_empty(), "a small peak is no matter");

        let pts: Vec<Point> = (0..20)
            .map(|i| Point {
                t_ms: i * 100,
                bytes: i * 40_960,
            })
            .collect();
        let trend = classify(
            &pts,
            Point {
                t_ms: 2_000,
                bytes: 819_200,
            },
        );
        assert_eq!(trend.severity, Severity::High);
        let leak = SiteFacts {
            live_bytes: 819_200,
            live_usable: 819_200,
            trend,
            ..healthy()
        };
        let a = advise(&leak, &PROC);
        assert_eq!((a[0].kind, a[0].savings_bytes), ("fix_leak", 819_200));
    }
}
