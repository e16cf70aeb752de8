//! The process-wide size and lifetime distributions, merged from the sites'.
//!
//! Every allocation records its size in its site's distributions and every
//! free its block's lifetime; the process's distributions are the sum of
//! those, so they are merged when a report asks for them instead of being
//! recorded a second time on every event.

use super::distribution::Distribution;
use super::heap::Site;
use super::histogram::Log2Histogram;

/// Distributions over every allocation of a process.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Requested sizes of every allocation: log2 buckets and percentiles.
    pub sizes: (Log2Histogram, Distribution),
    /// Lifetimes (ms) of every released block: log2 buckets and percentiles.
    pub lifetimes: (Log2Histogram, Distribution),
}

impl Summary {
    /// The sum of the distributions of `sites`.
    pub fn of<'a>(sites: impl Iterator<Item = &'a Site>) -> Self {
        let mut s = Summary::default();
        for site in sites {
            s.sizes.0.merge(&site.sizes);
            s.sizes.1.merge(&site.size_dist);
            s.lifetimes.0.merge(&site.lifetimes_ms);
            s.lifetimes.1.merge(&site.lifetime_dist);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_sites() {
        let mut sites = [Site::default(), Site::default()];
        for (i, size) in [(0, 16), (0, 16), (1, 4096)] {
            sites[i].sizes.record(size);
            sites[i].size_dist.record(size);
        }
        sites[1].lifetimes_ms.record(7);
        sites[1].lifetime_dist.record(7);
        let s = Summary::of(sites.iter());
        assert_eq!(s.sizes.1.count(), 3);
        assert_eq!(s.sizes.1.percentile(0.5), 16);
        assert_eq!(s.sizes.1.max(), 4096);
        let sizes: Vec<(u64, u64)> = s
            .sizes
            .0
            .buckets()
            .iter()
            .map(|b| (b.le, b.count))
            .collect();
        assert_eq!(sizes, [(16, 2), (4096, 1)]);
        assert_eq!((s.lifetimes.1.count(), s.lifetimes.1.min()), (1, 7));
        assert_eq!(s.lifetimes.0.buckets().len(), 1);
    }
}
