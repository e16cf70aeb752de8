//! The report's analysis sections: distributions, peak owners, growth,
//! fragmentation, attribution and recommendations (part of the JSON contract).

use serde::{Deserialize, Serialize};

use crate::analysis::growth::{Classification, Severity};
use crate::state::histogram::Bucket;
use crate::state::rate::RateBin;
use crate::state::timeline::Sample;

/// A distribution: count, percentiles and log2 buckets.
///
/// Percentiles are nearest-rank; `exact` says whether they are exact (few
/// distinct values) or histogram estimates (within 1 %). For lifetimes,
/// `censored` counts the blocks still live (their lifetime is not known yet:
/// they are not in the percentiles).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Values counted.
    pub count: u64,
    /// Blocks still live, not counted (lifetimes only).
    pub censored: u64,
    /// Smallest value.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Whether the percentiles are exact.
    pub exact: bool,
    /// Log2 buckets: values in `(le/2, le]`, zeros in `le = 0`.
    pub buckets: Vec<Bucket>,
}

/// A reference to an allocation site, with the frame it is attributed to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRef {
    /// The site's stack id, in hex (as in `sites[].id`).
    pub site: String,
    /// Function of the first frame outside the allocator wrappers (`"??"` if unknown).
    pub function: String,
    /// That frame as `function (file:line) [module]`.
    pub location: String,
}

/// The process peak and who held it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// Highest live heap bytes.
    pub bytes: u64,
    /// When, milliseconds since start.
    pub at_ms: u64,
    /// The sites that held the most at that moment, largest first.
    pub owners: Vec<PeakOwner>,
}

/// A site's share of the process peak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeakOwner {
    /// The site.
    #[serde(flatten)]
    pub site: SiteRef,
    /// Its live bytes at the peak.
    pub bytes: u64,
    /// Fraction of the peak (0 to 1).
    pub share: f64,
    /// Its live bytes now.
    pub live_bytes_now: u64,
}

/// A site whose live bytes trend upward (or spiked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    /// The site.
    #[serde(flatten)]
    pub site: SiteRef,
    /// Slope of live bytes over the whole series.
    pub bytes_per_second: f64,
    /// Slope over the recent half of the series.
    pub recent_bytes_per_second: f64,
    /// Fit quality (coefficient of determination).
    pub r2: f64,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: Severity,
    /// `leak`, `linear` or `spike` (stable sites are not listed).
    pub classification: Classification,
    /// Time covered, milliseconds.
    pub duration_ms: u64,
    /// Points fitted.
    pub points: usize,
    /// Live bytes at the first point.
    pub first_bytes: u64,
    /// Live bytes now.
    pub live_bytes: u64,
    /// Highest live bytes seen.
    pub max_bytes: u64,
}

/// Internal waste of one site's live blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteWaste {
    /// The site.
    #[serde(flatten)]
    pub site: SiteRef,
    /// Requested bytes live.
    pub requested_bytes: u64,
    /// Usable bytes live.
    pub usable_bytes: u64,
    /// `usable_bytes - requested_bytes`.
    pub internal_bytes: u64,
}

/// Allocation rate over time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AllocationRate {
    /// Mean allocations per second over the run.
    pub mean_per_second: f64,
    /// Width of a bin, milliseconds.
    pub bin_ms: u64,
    /// Percentiles of allocations per second across the bins.
    pub p50_per_second: u64,
    /// 90th percentile.
    pub p90_per_second: u64,
    /// 99th percentile.
    pub p99_per_second: u64,
    /// Busiest bin.
    pub max_per_second: u64,
    /// The bins.
    pub series: Vec<RateBin>,
}

/// Memory summed over a group of sites (a module or a category).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Module path or category name.
    pub name: String,
    /// Sites in the group.
    pub sites: u64,
    /// Allocations.
    pub alloc_calls: u64,
    /// Bytes requested.
    pub bytes_allocated: u64,
    /// Bytes live now.
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Live bytes at the process peak.
    pub peak_bytes: u64,
}

impl Usage {
    /// Adds `other`'s figures (one site's, or another group's) to these.
    pub fn add(&mut self, other: &Usage) {
        self.sites += other.sites;
        self.alloc_calls += other.alloc_calls;
        self.bytes_allocated += other.bytes_allocated;
        self.live_bytes += other.live_bytes;
        self.live_blocks += other.live_blocks;
        self.peak_bytes += other.peak_bytes;
    }
}

/// A suggested change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The site it is about.
    #[serde(flatten)]
    pub site: SiteRef,
    /// `fix_leak`, `pool`, `reserve`, `size_classes` or `stream`.
    pub kind: String,
    /// What to do, in words.
    pub text: String,
    /// The numbers it rests on.
    pub evidence: String,
    /// Bytes saved (memory, or allocation traffic for `reserve`), estimated.
    pub estimated_savings_bytes: u64,
    /// Allocations per second avoided, estimated.
    pub estimated_savings_allocs_per_second: f64,
    /// `easy`, `medium` or `hard`.
    pub difficulty: String,
}

/// The allocator's footprint against the program's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fragmentation {
    /// Latest resident set size.
    pub rss_bytes: Option<u64>,
    /// Bytes the allocator holds from the system (latest `mallinfo2`: arena + mmapped).
    pub heap_bytes: Option<u64>,
    /// Requested bytes live.
    pub requested_bytes: u64,
    /// Usable bytes of the live blocks.
    pub usable_bytes: u64,
    /// Internal fragmentation: `usable_bytes - requested_bytes`.
    #[serde(default)]
    pub internal_bytes: u64,
    /// `internal_bytes / usable_bytes`.
    #[serde(default)]
    pub internal_ratio: f64,
    /// Bytes the allocator counts in use (latest `mallinfo2`: uordblks + hblkhd).
    #[serde(default)]
    pub heap_in_use_bytes: Option<u64>,
    /// External fragmentation: free memory the allocator holds (`heap_bytes - heap_in_use_bytes`).
    #[serde(default)]
    pub heap_free_bytes: Option<u64>,
    /// `heap_free_bytes / heap_bytes`.
    #[serde(default)]
    pub external_ratio: Option<f64>,
    /// Allocator bookkeeping: `heap_in_use_bytes - usable_bytes` (saturating).
    #[serde(default)]
    pub allocator_overhead_bytes: Option<u64>,
    /// Memory the program mapped itself with `mmap` (not heap).
    #[serde(default)]
    pub mmap_bytes: u64,
    /// Of which anonymous.
    #[serde(default)]
    pub mmap_anonymous_bytes: u64,
    /// Resident memory that is neither heap nor the program's mappings (code, stacks, …).
    #[serde(default)]
    pub rss_other_bytes: Option<u64>,
    /// The sites wasting the most to internal fragmentation.
    #[serde(default)]
    pub top_internal: Vec<SiteWaste>,
    /// Over time: the same figures as `timeline` (rss, heap, heap in use, usable, requested, mmap).
    #[serde(default)]
    pub series: Vec<Sample>,
}
