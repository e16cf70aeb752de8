//! Sampled-mode figures in the report: estimates with 99 % intervals.

use serde::{Deserialize, Serialize};

use crate::state::sampling::{Estimate, SiteEstimates};
use crate::state::Heap;

/// One estimated figure: the value and the half-width of its 99 % interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The unbiased estimate.
    pub value: f64,
    /// ± this much at 99 % confidence.
    pub ci99: f64,
}

impl From<Estimate> for Figure {
    fn from(e: Estimate) -> Self {
        Figure {
            value: e.value,
            ci99: e.ci99(),
        }
    }
}

/// Estimated totals of a site or a process, in sampled mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    /// Allocation calls.
    pub alloc_calls: Figure,
    /// Bytes allocated.
    pub bytes_allocated: Figure,
    /// Blocks live (at exit once the process ended).
    pub live_blocks: Figure,
    /// Bytes live.
    pub live_bytes: Figure,
}

impl From<SiteEstimates> for Estimates {
    fn from(e: SiteEstimates) -> Self {
        Estimates {
            alloc_calls: e.calls.into(),
            bytes_allocated: e.bytes.into(),
            live_blocks: e.live_blocks.into(),
            live_bytes: e.live_bytes.into(),
        }
    }
}

/// The process-wide estimates: the sum over its (independent) sites.
pub fn process(heap: &Heap) -> Option<Estimates> {
    if heap.sample_mean() == 0 {
        return None;
    }
    let total = heap
        .sites()
        .values()
        .filter_map(|s| s.estimates.as_deref().copied())
        .fold(SiteEstimates::default(), SiteEstimates::plus);
    Some(total.into())
}
