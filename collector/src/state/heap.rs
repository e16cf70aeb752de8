//! The live heap of one process: blocks, per-site aggregates and the peak.
//!
//! The process peak is tracked in O(1) per event with a lazy epoch
//! checkpoint: `peak_epoch` grows whenever a new process peak is set, and
//! each site remembers its live bytes as of the last epoch it saw. A site
//! touched for the first time since the latest peak first records its
//! current (unchanged since that peak) live bytes as its share of the peak.

use rustc_hash::FxHashMap as HashMap;

use memshim_proto::StackId;

use super::distribution::Distribution;
use super::histogram::Log2Histogram;
use super::live::{LiveBlock, LiveBlocks};
use super::sampling::SiteEstimates;
use super::series::{LiveSeries, Point};

/// Aggregates of one allocation site (one unique stack).
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// Allocations made here (realloc included).
    pub alloc_calls: u64,
    /// Bytes requested here over the whole run.
    pub bytes_allocated: u64,
    /// Bytes currently live from here.
    pub live_bytes: u64,
    /// Blocks currently live from here.
    pub live_blocks: u64,
    /// Requested sizes of the allocations.
    pub sizes: Log2Histogram,
    /// Lifetimes in milliseconds of the freed blocks.
    pub lifetimes_ms: Log2Histogram,
    /// Requested sizes, for percentiles.
    pub size_dist: Distribution,
    /// Lifetimes in milliseconds of the freed blocks, for percentiles.
    pub lifetime_dist: Distribution,
    /// Usable bytes (`malloc_usable_size`) of the live blocks.
    pub live_usable: u64,
    /// Blocks from here that were released (realloc's included).
    pub freed_blocks: u64,
    /// Blocks freed by their thread before it allocated anything else.
    pub temporary: u64,
    /// Blocks freed less than [`SHORT_LIVED_MS`] after their allocation.
    pub short_lived: u64,
    /// `realloc`s here that grew a block.
    pub realloc_grows: u64,
    /// Bytes the growing `realloc`s here had to carry over from the old block.
    pub realloc_copied_bytes: u64,
    /// Longest realloc chain (reallocs of one block) that ended here.
    pub max_chain: u32,
    /// Live bytes over time (sampled on the session's tick).
    pub series: Option<Box<LiveSeries>>,
    /// Estimated totals, in sampled mode only.
    pub estimates: Option<Box<SiteEstimates>>,
    epoch_seen: u64,
    live_at_peak: u64,
}

/// A block freed sooner than this after its allocation is short-lived.
pub const SHORT_LIVED_MS: u64 = 100;

/// The live set, the sites and the process peak.
#[derive(Debug, Clone, Default)]
pub struct Heap {
    live: LiveBlocks,
    sites: HashMap<StackId, Site>,
    live_bytes: u64,
    live_usable: u64,
    peak_bytes: u64,
    peak_ts: u64,
    peak_epoch: u64,
    sample_mean: u64,
}

impl Heap {
    /// A heap that starts with `live` (a forked child's inheritance).
    ///
    /// The inherited live bytes are the child's peak baseline at time 0.
    pub fn inherit(live: LiveBlocks, sample_mean: u64) -> Self {
        let mut heap = Heap::sampled(sample_mean);
        for (_, block) in live.iter() {
            heap.sites
                .entry(block.stack)
                .or_default()
                .add(&block, sample_mean);
            heap.live_bytes += block.size;
            heap.live_usable += block.usable;
        }
        heap.live = live;
        heap.peak_bytes = heap.live_bytes;
        // A peak after every site's last change: each site's share is its live bytes.
        heap.peak_epoch = 1;
        heap
    }

    /// An empty heap for a stream sampled every `sample_mean` bytes (0: exact).
    pub fn sampled(sample_mean: u64) -> Self {
        Heap {
            sample_mean,
            ..Heap::default()
        }
    }

    /// Mean bytes between samples of the stream (0: every call recorded).
    pub fn sample_mean(&self) -> u64 {
        self.sample_mean
    }

    /// Inserts a block; returns the block it replaced, if the address was live.
    pub fn insert(&mut self, addr: u64, block: LiveBlock) -> Option<LiveBlock> {
        let replaced = self.remove(addr);
        let mean = self.sample_mean;
        self.checkpoint(block.stack).add(&block, mean);
        self.live.insert_new(addr, block);
        self.live_bytes += block.size;
        self.live_usable += block.usable;
        if self.live_bytes > self.peak_bytes {
            self.peak_bytes = self.live_bytes;
            self.peak_ts = block.ts;
            self.peak_epoch += 1;
        }
        replaced
    }

    /// Removes a block if it is live.
    pub fn remove(&mut self, addr: u64) -> Option<LiveBlock> {
        let block = self.live.remove(addr)?;
        let mean = self.sample_mean;
        self.checkpoint(block.stack).sub(&block, mean);
        self.live_bytes -= block.size;
        self.live_usable -= block.usable;
        Some(block)
    }

    /// The site of `stack`, created if needed, without touching its peak share.
    ///
    /// Only for counters that do not change live bytes.
    pub fn site_mut(&mut self, stack: StackId) -> &mut Site {
        self.sites.entry(stack).or_default()
    }

    /// Takes the site's peak checkpoint if a new peak was set since it was last touched.
    fn checkpoint(&mut self, stack: StackId) -> &mut Site {
        let epoch = self.peak_epoch;
        let site = self.sites.entry(stack).or_default();
        if site.epoch_seen != epoch {
            site.live_at_peak = site.live_bytes;
            site.epoch_seen = epoch;
        }
        site
    }

    /// The live bytes of `site` at the moment of the process peak.
    pub fn site_peak_bytes(&self, site: &Site) -> u64 {
        if site.epoch_seen == self.peak_epoch {
            site.live_at_peak
        } else {
            site.live_bytes
        }
    }

    /// All sites by stack id.
    pub fn sites(&self) -> &HashMap<StackId, Site> {
        &self.sites
    }

    /// The live blocks by address.
    pub fn live(&self) -> &LiveBlocks {
        &self.live
    }

    /// Requested bytes currently live.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Usable bytes currently live.
    pub fn live_usable(&self) -> u64 {
        self.live_usable
    }

    /// Highest live bytes so far.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes
    }

    /// Nanoseconds since start when the peak was reached.
    pub fn peak_ts(&self) -> u64 {
        self.peak_ts
    }

    /// Samples the live bytes of every site that has (or had) live blocks.
    pub fn sample_sites(&mut self, t_ms: u64) {
        for site in self.sites.values_mut() {
            if site.live_bytes == 0 && site.series.is_none() {
                continue;
            }
            site.series
                .get_or_insert_with(Default::default)
                .record(Point {
                    t_ms,
                    bytes: site.live_bytes,
                });
        }
    }
}

impl Site {
    fn add(&mut self, block: &LiveBlock, sample_mean: u64) {
        self.live_bytes += block.size;
        self.live_usable += block.usable;
        self.live_blocks += 1;
        if sample_mean != 0 {
            self.estimates_mut().on_live(block.size, sample_mean, true);
        }
    }

    fn sub(&mut self, block: &LiveBlock, sample_mean: u64) {
        self.live_bytes -= block.size;
        self.live_usable -= block.usable;
        self.live_blocks -= 1;
        if sample_mean != 0 {
            self.estimates_mut().on_live(block.size, sample_mean, false);
        }
    }

    /// The site's estimates, created on first use.
    pub fn estimates_mut(&mut self) -> &mut SiteEstimates {
        self.estimates.get_or_insert_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(size: u64, stack: StackId, ts: u64) -> LiveBlock {
        LiveBlock {
            size,
            usable: size + 8,
            stack,
            ts,
            chain: 0,
        }
    }

    fn peak_of(heap: &Heap, stack: StackId) -> u64 {
        heap.site_peak_bytes(&heap.sites()[&stack])
    }

    #[test]
    fn site_peak_is_its_share_at_the_process_peak_not_its_own_max() {
        let mut h = Heap::default();
        // A grows to 100 and shrinks; B grows later. Process peak is at A=100,B=10.
        h.insert(0x10, block(60, 1, 1));
        h.insert(0x20, block(40, 1, 2));
        h.insert(0x30, block(10, 2, 3)); // peak 110
        h.remove(0x10); // A=40, B=10: 50
        h.insert(0x40, block(30, 2, 4)); // B=40: 80
        h.insert(0x50, block(20, 2, 5)); // B=60: 100 < 110
        assert_eq!(h.peak_bytes(), 110);
        assert_eq!(h.peak_ts(), 3);
        assert_eq!(peak_of(&h, 1), 100);
        assert_eq!(peak_of(&h, 2), 10);
        assert_eq!(h.live_bytes(), 100);
        assert_eq!(h.live_usable(), 100 + 4 * 8);
        // A new peak moves every share, including untouched sites.
        h.insert(0x60, block(50, 3, 6)); // 150: A=40, B=60, C=50
        assert_eq!(h.peak_bytes(), 150);
        assert_eq!(peak_of(&h, 1), 40);
        assert_eq!(peak_of(&h, 2), 60);
        assert_eq!(peak_of(&h, 3), 50);
        h.remove(0x60);
        h.remove(0x40);
        assert_eq!(peak_of(&h, 2), 60);
        assert_eq!(peak_of(&h, 3), 50);
        let total: u64 = h.sites().values().map(|s| h.site_peak_bytes(s)).sum();
        assert_eq!(total, h.peak_bytes());
    }

    #[test]
    fn replacing_a_live_address_returns_the_old_block() {
        let mut h = Heap::default();
        assert!(h.insert(0x10, block(8, 1, 1)).is_none());
        let old = h.insert(0x10, block(16, 2, 2)).unwrap();
        assert_eq!(old.size, 8);
        assert_eq!(h.live_bytes(), 16);
        assert_eq!(h.sites()[&1].live_blocks, 0);
        assert_eq!(h.sites()[&2].live_blocks, 1);
    }

    #[test]
    fn inherited_blocks_set_the_peak_baseline() {
        let mut blocks = LiveBlocks::default();
        blocks.insert_new(0x10, block(100, 7, 0));
        let mut h = Heap::inherit(blocks, 0);
        assert_eq!((h.live_bytes(), h.peak_bytes()), (100, 100));
        h.remove(0x10);
        h.insert(0x20, block(30, 8, 5));
        assert_eq!(h.peak_bytes(), 100);
        assert_eq!(peak_of(&h, 7), 100);
        assert_eq!(peak_of(&h, 8), 0);
    }
}
