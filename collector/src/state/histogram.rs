//! Power-of-two histograms for sizes and lifetimes.

use serde::{Deserialize, Serialize};

/// A histogram with one bucket per power of two.
///
/// Bucket 0 counts zeros; bucket `b >= 1` counts the values in
/// `(2^(b-2), 2^(b-1)]`, so a value lands in the smallest bucket whose
/// upper bound (`le`) is at least the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log2Histogram {
    counts: Vec<u64>,
}

/// One non-empty bucket of a [`Log2Histogram`], as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Inclusive upper bound of the bucket.
    pub le: u64,
    /// Number of values in the bucket.
    pub count: u64,
}

#[inline]
fn bucket_of(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        // ceil(log2(value)) + 1
        (64 - (value - 1).leading_zeros()) as usize + 1
    }
}

fn upper_bound(bucket: usize) -> u64 {
    match bucket {
        0 => 0,
        b if b <= 64 => 1u64 << (b - 1),
        _ => u64::MAX,
    }
}

impl Log2Histogram {
    /// Counts one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        let b = bucket_of(value);
        match self.counts.get_mut(b) {
            Some(count) => *count += 1,
            None => self.grow_and_record(b),
        }
    }

    #[cold]
    fn grow_and_record(&mut self, b: usize) {
        self.counts.resize(b + 1, 0);
        self.counts[b] += 1;
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Log2Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (ours, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *ours += theirs;
        }
    }

    /// The non-empty buckets, smallest first.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &count)| Bucket {
                le: upper_bound(b),
                count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_adds_bucket_by_bucket() {
        let (mut a, mut b) = (Log2Histogram::default(), Log2Histogram::default());
        a.record(3);
        b.record(3);
        b.record(1000);
        a.merge(&b);
        let got: Vec<(u64, u64)> = a.buckets().iter().map(|b| (b.le, b.count)).collect();
        assert_eq!(got, [(4, 2), (1024, 1)]);
        b.merge(&Log2Histogram::default());
        assert_eq!(b.buckets().len(), 2);
    }

    #[test]
    fn values_land_in_the_smallest_covering_bucket() {
        let mut h = Log2Histogram::default();
        for v in [0, 1, 2, 3, 4, 5, 16, 17, u64::MAX] {
            h.record(v);
        }
        let got: Vec<(u64, u64)> = h.buckets().iter().map(|b| (b.le, b.count)).collect();
        assert_eq!(
            got,
            vec![
                (0, 1),
                (1, 1),
                (2, 1),
                (4, 2),
                (8, 1),
                (16, 1),
                (32, 1),
                (u64::MAX, 1)
            ]
        );
    }
}
