//! The live heap of one process: blocks, per-site aggregates and the peak.
//!
//! The process peak is tracked in O(1) per event with a lazy epoch
//! checkpoint: `peak_epoch` grows whenever a new process peak is set, and
//! each site remembers its live bytes as of the last epoch it saw. A site
//! touched for the first time since the latest peak first records its
//! current (unchanged since that peak) live bytes as its share of the peak.

use memshim_proto::StackId;

use super::distribution::Distribution;
use super::histogram::Log2Histogram;
use super::live::{LiveBlock, LiveBlocks};
use super::sampling::SiteEstimates;
use super::series::{LiveSeries, Point};
use super::sites::{SiteIndex, Sites};

/// Aggregates of one allocation site (one unique stack).
///
/// Laid out in declaration order (`repr(C)`), the figures every event and
/// every pass of a report reads first, the bulky histograms last: a report
/// visits thousands of sites in turn, and with the figures spread over the
/// record by the compiler's layout each site cost it three or four cache
/// misses instead of one or two.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub struct Site {
    /// Allocations made here (realloc included).
    pub alloc_calls: u64,
    /// Bytes requested here over the whole run.
    pub bytes_allocated: u64,
    /// Bytes currently live from here.
    pub live_bytes: u64,
    /// Blocks currently live from here.
    pub live_blocks: u64,
    /// Usable bytes (`malloc_usable_size`) of the live blocks.
    pub live_usable: u64,
    epoch_seen: u64,
    live_at_peak: u64,
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
    /// Live bytes over time (sampled on the session's tick).
    pub series: Option<Box<LiveSeries>>,
    /// Estimated totals, in sampled mode only.
    pub estimates: Option<Box<SiteEstimates>>,
    /// Longest realloc chain (reallocs of one block) that ended here.
    pub max_chain: u32,
    /// Requested sizes of the allocations.
    pub sizes: Log2Histogram,
    /// Lifetimes in milliseconds of the freed blocks.
    pub lifetimes_ms: Log2Histogram,
    /// Requested sizes, for percentiles.
    pub size_dist: Distribution,
    /// Lifetimes in milliseconds of the freed blocks, for percentiles.
    pub lifetime_dist: Distribution,
}

/// A block freed sooner than this after its allocation is short-lived.
pub const SHORT_LIVED_MS: u64 = 100;

/// No index yet: a site none of whose blocks was packed, or a stack index of
/// the live set that no site was linked to.
const UNLINKED: u32 = u32::MAX;

/// The live set, the sites and the process peak.
#[derive(Debug, Clone, Default)]
pub struct Heap {
    live: LiveBlocks,
    sites: Sites,
    /// The stack index the live set packs each site's blocks with, by site.
    live_index_of_site: Vec<u32>,
    /// The site of each stack index of the live set: a freed block's site
    /// without a lookup of its stack id.
    site_of_live_index: Vec<u32>,
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
        for (_, block, live_index) in live.iter_indexed() {
            let site = heap.sites.index_of(block.stack);
            if let Some(live_index) = live_index {
                heap.link(site, live_index);
            }
            heap.sites.at_mut(site).add(&block, sample_mean);
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
        let site = self.sites.index_of(block.stack);
        self.insert_at(addr, block, site)
    }

    /// Inserts a block of the site at `site` (the site of `block.stack`);
    /// returns the block it replaced, if the address was live.
    #[inline(always)]
    pub fn insert_at(&mut self, addr: u64, block: LiveBlock, site: SiteIndex) -> Option<LiveBlock> {
        let live_index = self.live_index(site, block.stack);
        let replaced = self
            .live
            .replace(addr, &block, live_index)
            .map(|(old, old_index)| {
                let old_site = self.site_of(old_index, old.stack);
                self.account_removal(old_site, &old);
                old
            });
        let mean = self.sample_mean;
        self.checkpoint(site).add(&block, mean);
        self.live_bytes += block.size;
        self.live_usable += block.usable;
        if self.live_bytes > self.peak_bytes {
            self.peak_bytes = self.live_bytes;
            self.peak_ts = block.ts;
            self.peak_epoch += 1;
        }
        replaced
    }

    /// Whether a block of `size` bytes allocated at `addr` and freed at
    /// once would leave the heap exactly as it found it: the address is not
    /// live (no block replaced) and the block would not set a new peak.
    /// Such a block need not enter the live set ([`Heap::pass_through`]).
    #[inline]
    pub fn is_transient(&self, addr: u64, size: u64) -> bool {
        self.live_bytes + size <= self.peak_bytes && !self.live.contains(addr)
    }

    /// Accounts a block of `site` (the site of `stack`) that is freed as
    /// soon as allocated, where [`Heap::is_transient`] holds: live bytes,
    /// peak and each site's share of it end as `insert_at` then `remove_at`
    /// would leave them, and the site gets its live-set index on first use
    /// just the same.
    #[inline]
    pub fn pass_through(&mut self, site: SiteIndex, stack: StackId) {
        self.live_index(site, stack);
    }

    /// Removes a block if it is live.
    pub fn remove(&mut self, addr: u64) -> Option<LiveBlock> {
        self.remove_at(addr).map(|(block, _)| block)
    }

    /// Removes a block if it is live; returns it with its site.
    #[inline(always)]
    pub fn remove_at(&mut self, addr: u64) -> Option<(LiveBlock, SiteIndex)> {
        let (block, live_index) = self.live.remove_indexed(addr)?;
        let site = self.site_of(live_index, block.stack);
        self.account_removal(site, &block);
        Some((block, site))
    }

    #[inline]
    fn account_removal(&mut self, site: SiteIndex, block: &LiveBlock) {
        let mean = self.sample_mean;
        self.checkpoint(site).sub(block, mean);
        self.live_bytes -= block.size;
        self.live_usable -= block.usable;
    }

    /// The index of the site of `stack`, created if needed.
    #[inline]
    pub fn site_index(&mut self, stack: StackId) -> SiteIndex {
        self.sites.index_of(stack)
    }

    /// The site at `site`, without touching its peak share.
    ///
    /// Only for counters that do not change live bytes.
    #[inline]
    pub fn site_at(&mut self, site: SiteIndex) -> &mut Site {
        self.sites.at_mut(site)
    }

    /// The live set's stack index for the blocks of `site`, numbered on first use.
    #[inline]
    fn live_index(&mut self, site: SiteIndex, stack: StackId) -> Option<u32> {
        match self.live_index_of_site.get(site.get()) {
            Some(&index) if index != UNLINKED => Some(index),
            _ => self.number(site, stack),
        }
    }

    #[cold]
    fn number(&mut self, site: SiteIndex, stack: StackId) -> Option<u32> {
        let index = self.live.intern(stack)?;
        self.link(site, index);
        Some(index)
    }

    /// Records that the live set packs the blocks of `site` with `live_index`.
    fn link(&mut self, site: SiteIndex, live_index: u32) {
        let (s, l) = (site.get(), live_index as usize);
        if self.live_index_of_site.len() <= s {
            self.live_index_of_site.resize(s + 1, UNLINKED);
        }
        self.live_index_of_site[s] = live_index;
        if self.site_of_live_index.len() <= l {
            self.site_of_live_index.resize(l + 1, UNLINKED);
        }
        self.site_of_live_index[l] = site.raw();
    }

    /// The site of a block of `stack` that the live set packed with `live_index`.
    #[inline]
    fn site_of(&mut self, live_index: Option<u32>, stack: StackId) -> SiteIndex {
        match live_index.and_then(|l| self.site_of_live_index.get(l as usize)) {
            Some(&site) if site != UNLINKED => SiteIndex::from_raw(site),
            // A block kept whole: its site by stack id (it exists, as the block is live).
            _ => self.sites.index_of(stack),
        }
    }

    /// Takes the site's peak checkpoint if a new peak was set since it was last touched.
    #[inline]
    fn checkpoint(&mut self, site: SiteIndex) -> &mut Site {
        let epoch = self.peak_epoch;
        let site = self.sites.at_mut(site);
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
    pub fn sites(&self) -> &Sites {
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
    #[inline]
    fn add(&mut self, block: &LiveBlock, sample_mean: u64) {
        self.live_bytes += block.size;
        self.live_usable += block.usable;
        self.live_blocks += 1;
        if sample_mean != 0 {
            self.estimates_mut().on_live(block.size, sample_mean, true);
        }
    }

    #[inline]
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
    fn frees_find_their_site_packed_or_not() {
        let mut h = Heap::default();
        h.insert(0x10, block(8, 1, 1));
        h.insert(1 << 50, block(16, 2, 2)); // too high to pack: kept whole
        h.insert(0x20, block(5 << 30, 2, 3)); // too large to pack
        h.insert(0x30, block(32, 2, 4));
        let (b, site) = h.remove_at(1 << 50).unwrap();
        assert_eq!((b.size, site), (16, h.sites.index_of(2)));
        let (b, site) = h.remove_at(0x10).unwrap();
        assert_eq!((b.size, site), (8, h.sites.index_of(1)));
        assert_eq!(h.sites()[&2].live_bytes, (5 << 30) + 32);
        assert_eq!(h.sites()[&2].live_blocks, 2);
        assert_eq!(h.sites()[&1].live_blocks, 0);
        assert_eq!(h.live_bytes(), (5 << 30) + 32);
        assert!(h.remove_at(0x10).is_none());
    }

    #[test]
    fn a_forked_heap_links_inherited_blocks_to_new_sites() {
        let mut parent = Heap::default();
        for stack in 1..=5 {
            parent.insert(stack * 0x100, block(stack, stack, 0));
        }
        parent.remove(0x100); // stack 1: numbered by the live set, no block left
        let mut child = Heap::inherit(parent.live().clone(), 0);
        assert_eq!(child.sites().len(), 4);
        assert!(child.sites().get(&1).is_none());
        child.insert(0x600, block(6, 1, 1)); // a new site for an old stack index
        assert_eq!(child.remove_at(0x300).map(|(b, _)| b.size), Some(3));
        assert_eq!(child.remove_at(0x600).map(|(b, _)| b.size), Some(6));
        assert_eq!(child.sites()[&3].live_blocks, 0);
        assert_eq!(child.sites()[&1].live_blocks, 0);
        assert_eq!(child.sites()[&4].live_bytes, 4);
        assert_eq!(child.live_bytes(), 2 + 4 + 5);
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
