//! Power-of-two histograms for sizes and lifetimes.

use serde::{Deserialize, Serialize};

/// A histogram with one bucket per power of two.
///
/// Bucket 0 counts zeros; bucket `b >= 1` counts the values in
/// `(2^(b-2), 2^(b-1)]`, so a value lands in the smallest bucket whose
/// upper bound (`le`) is at least the value.
#[derive(Debug, Clone, Default)]
pub struct Log2Histogram {
    counts: Counts,
}

/// Buckets counted in the struct itself: the values of most sites fall in
/// one or two neighbouring powers of two, and a site is then counted with
/// no allocation.
const INLINE: usize = 2;

#[derive(Debug, Clone)]
enum Counts {
    /// The counts of buckets `first..first + INLINE`.
    Inline { first: u8, counts: [u64; INLINE] },
    /// The counts of buckets `0..len`.
    Spilled(Vec<u64>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Inline {
            first: 0,
            counts: [0; INLINE],
        }
    }
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
        self.add(bucket_of(value), 1);
    }

    /// Counts `n` more values in bucket `b`.
    #[inline]
    fn add(&mut self, b: usize, n: u64) {
        match &mut self.counts {
            Counts::Inline { first, counts } => {
                let i = b.wrapping_sub(usize::from(*first));
                if i < INLINE {
                    counts[i] += n;
                    return;
                }
                if *counts == [0; INLINE] {
                    // Empty: the window starts at the first value's bucket (at most 65).
                    *first = b as u8;
                    counts[0] = n;
                    return;
                }
            }
            Counts::Spilled(counts) => {
                if let Some(count) = counts.get_mut(b) {
                    *count += n;
                    return;
                }
            }
        }
        self.grow_and_add(b, n);
    }

    /// Moves the counts to a `Vec` that reaches bucket `b`, and counts `n` there.
    #[cold]
    fn grow_and_add(&mut self, b: usize, n: u64) {
        let mut spilled = match &mut self.counts {
            Counts::Spilled(counts) => std::mem::take(counts),
            Counts::Inline { .. } => self.iter().map(|(_, count)| count).collect(),
        };
        if spilled.len() <= b {
            spilled.resize(b + 1, 0);
        }
        spilled[b] += n;
        self.counts = Counts::Spilled(spilled);
    }

    /// Every bucket kept, empty or not, with its count: smallest first.
    fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let (first, counts) = match &self.counts {
            Counts::Inline { first, counts } => (usize::from(*first), &counts[..]),
            Counts::Spilled(counts) => (0, &counts[..]),
        };
        let skipped = (0..first).map(|b| (b, 0));
        skipped.chain(
            counts
                .iter()
                .enumerate()
                .map(move |(i, &count)| (first + i, count)),
        )
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Log2Histogram) {
        for (b, count) in other.iter().filter(|&(_, count)| count > 0) {
            self.add(b, count);
        }
    }

    /// The non-empty buckets, smallest first.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.iter()
            .filter(|&(_, count)| count > 0)
            .map(|(b, count)| Bucket {
                le: upper_bound(b),
                count,
            })
            .collect()
    }
}

impl PartialEq for Log2Histogram {
    /// Equal when every bucket has the same count, however they are kept.
    fn eq(&self, other: &Self) -> bool {
        self.buckets() == other.buckets()
    }
}

impl Eq for Log2Histogram {}

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
    fn two_neighbouring_buckets_are_kept_inline_then_all_move_out() {
        let mut h = Log2Histogram::default();
        for v in [40, 64, 33, 100, 128, 65] {
            h.record(v);
        }
        assert!(matches!(h.counts, Counts::Inline { first: 7, .. }));
        let inline = h.clone();
        h.record(3);
        assert!(matches!(h.counts, Counts::Spilled(_)));
        let got: Vec<(u64, u64)> = h.buckets().iter().map(|b| (b.le, b.count)).collect();
        assert_eq!(got, [(4, 1), (64, 3), (128, 3)]);
        h.record(0);
        h.record(1 << 40);
        assert_eq!(h.buckets().len(), 5);
        assert_eq!(h.buckets()[0].le, 0);
        assert_ne!(h, inline);
        let mut spilled = Log2Histogram::default();
        spilled.record(1 << 20);
        spilled.record(1);
        spilled.merge(&inline);
        let mut merged = inline.clone();
        merged.merge(&spilled);
        let got: Vec<(u64, u64)> = merged.buckets().iter().map(|b| (b.le, b.count)).collect();
        assert_eq!(got, [(1, 1), (64, 6), (128, 6), (1 << 20, 1)]);
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
