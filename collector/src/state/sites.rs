//! The allocation sites of one process, numbered densely.
//!
//! Each event touches the site of its block several times (counters, sizes,
//! lifetimes, live bytes, peak share). Sites live in a `Vec` and are reached
//! by a [`SiteIndex`]: an allocation looks its stack id up once (and not at
//! all when it comes from the same site as the previous one), a free finds
//! the index through its live block, with no hashing.
//!
//! The map from stack id to index is filled in the order sites first appear,
//! exactly as the map of sites it replaces was, so iterating over it visits
//! the sites in the same order as before: reports that sum floating-point
//! figures over the sites stay byte-identical.

use std::ops::Index;

use rustc_hash::FxHashMap as HashMap;

use memshim_proto::StackId;

use super::heap::Site;

/// The position of a site in its [`Sites`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteIndex(u32);

impl SiteIndex {
    /// The index as a position in a `Vec`.
    pub fn get(self) -> usize {
        self.0 as usize
    }

    /// The index as kept in a table of `u32`s.
    pub(super) fn raw(self) -> u32 {
        self.0
    }

    /// An index read back from such a table.
    pub(super) fn from_raw(raw: u32) -> Self {
        SiteIndex(raw)
    }
}

/// The sites of one process by stack id, stored densely.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    /// Stack id → index into `sites`, in order of first appearance.
    ///
    /// An `FxHashMap` like the map of sites it replaces: the same hasher and
    /// insertion order give the same iteration order. Stack ids are the
    /// shim's 64-bit hashes, not keys an attacker picks, so one multiply
    /// hashes them well enough, and much faster than SipHash.
    index: HashMap<StackId, SiteIndex>,
    sites: Vec<Site>,
    /// The stack id of each site, by index: for the passes over every site
    /// that need no particular order ([`Sites::iter_by_index`]).
    ids: Vec<StackId>,
    /// The stack and index last looked up: consecutive allocations very
    /// often come from one site.
    last: Option<(StackId, SiteIndex)>,
}

impl Sites {
    /// The index of the site of `stack`, created if new.
    ///
    /// # Panics
    ///
    /// Past 2^32 sites (each takes hundreds of bytes: memory runs out first).
    #[inline]
    pub fn index_of(&mut self, stack: StackId) -> SiteIndex {
        match self.last {
            Some((last, i)) if last == stack => i,
            _ => self.index_of_slow(stack),
        }
    }

    fn index_of_slow(&mut self, stack: StackId) -> SiteIndex {
        let (sites, ids) = (&mut self.sites, &mut self.ids);
        let i = *self.index.entry(stack).or_insert_with(|| {
            let i = u32::try_from(sites.len()).expect("fewer than 2^32 sites");
            sites.push(Site::default());
            ids.push(stack);
            SiteIndex(i)
        });
        self.last = Some((stack, i));
        i
    }

    /// The site at `i`.
    #[inline]
    pub fn at_mut(&mut self, i: SiteIndex) -> &mut Site {
        &mut self.sites[i.get()]
    }

    /// The site of `stack`, if it exists.
    pub fn get(&self, stack: &StackId) -> Option<&Site> {
        self.index.get(stack).map(|&i| &self.sites[i.get()])
    }

    /// Every site with its stack id, in the order of the stack-id map.
    pub fn iter(&self) -> impl Iterator<Item = (&StackId, &Site)> + '_ {
        self.index.iter().map(|(id, &i)| (id, &self.sites[i.get()]))
    }

    /// Every site with its stack id, in the order the sites first appeared:
    /// through memory in order, which the processor reads ahead, where
    /// [`Self::iter`] jumps from site to site (thousands of cache misses in
    /// a report on a large program). For sums and for what is sorted after.
    pub fn iter_by_index(&self) -> impl Iterator<Item = (StackId, &Site)> + '_ {
        self.ids.iter().copied().zip(&self.sites)
    }

    /// Every site, in the order of [`Self::iter`].
    pub fn values(&self) -> impl Iterator<Item = &Site> + '_ {
        self.iter().map(|(_, site)| site)
    }

    /// Every site, mutably, in index order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Site> + '_ {
        self.sites.iter_mut()
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether there is no site.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }
}

impl Index<&StackId> for Sites {
    type Output = Site;

    /// The site of `stack`; panics if there is none.
    fn index(&self, stack: &StackId) -> &Site {
        self.get(stack).expect("no site with this stack id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_stable() {
        let mut sites = Sites::default();
        let a = sites.index_of(0xaaaa);
        let b = sites.index_of(0xbbbb);
        assert_eq!((a.get(), b.get()), (0, 1));
        assert_eq!(sites.index_of(0xaaaa), a, "through the map");
        assert_eq!(sites.index_of(0xaaaa), a, "through the last lookup");
        assert_eq!(sites.index_of(0xbbbb), b);
        sites.at_mut(b).alloc_calls = 7;
        assert_eq!(sites[&0xbbbb].alloc_calls, 7);
        assert_eq!(sites.get(&0xaaaa).map(|s| s.alloc_calls), Some(0));
        assert!(sites.get(&0xcccc).is_none());
        assert_eq!(sites.len(), 2);
        let by_index: Vec<(StackId, u64)> = sites
            .iter_by_index()
            .map(|(id, s)| (id, s.alloc_calls))
            .collect();
        assert_eq!(by_index, [(0xaaaa, 0), (0xbbbb, 7)]);
    }

    #[test]
    fn iteration_follows_the_order_of_a_map_of_sites() {
        // The map a heap kept its sites in before, filled in the same order.
        let mut sites = Sites::default();
        let mut reference: HashMap<StackId, u64> = HashMap::default();
        for k in 0..5_000u64 {
            let stack = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k << 7);
            let i = sites.index_of(stack);
            sites.at_mut(i).alloc_calls = k;
            reference.entry(stack).or_insert(k);
            sites.index_of(stack);
        }
        let got: Vec<(StackId, u64)> = sites.iter().map(|(&id, s)| (id, s.alloc_calls)).collect();
        let want: Vec<(StackId, u64)> = reference.into_iter().collect();
        assert_eq!(got, want);
        let values: Vec<u64> = sites.values().map(|s| s.alloc_calls).collect();
        assert_eq!(values, got.iter().map(|&(_, n)| n).collect::<Vec<_>>());
        assert_ne!(
            values[..10],
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            "not index order"
        );
    }
}
