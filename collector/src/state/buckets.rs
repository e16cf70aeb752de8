//! Log-linear value buckets, laid out as `hdrhistogram`'s at two significant
//! figures (lowest discernible value 1), so that percentiles read from them
//! are the very ones an `hdrhistogram::Histogram::<u64>::new(2)` gives.
//!
//! Values below 256 have a bucket each. Above, each power-of-two range
//! `[128 << b, 256 << b)` is split into 128 buckets of width `1 << b`
//! (relative error below 1 %). A value's bucket is one `leading_zeros`, a
//! shift and an add away: recording one is O(1), with no float math.

/// `log2` of the number of buckets per power-of-two range above 256.
const HALF_MAGNITUDE: u32 = 7;
/// Values below this have a bucket each.
const EXACT_BELOW: u64 = 1 << (HALF_MAGNITUDE + 1);

/// The bucket of `value`: its index in the counts.
#[inline]
fn index_of(value: u64) -> usize {
    // How many powers of two `value` is above the exact range (0 inside it).
    let shift = 64 - (HALF_MAGNITUDE + 1) - (value | (EXACT_BELOW - 1)).leading_zeros();
    (((shift as u64) << HALF_MAGNITUDE) + (value >> shift)) as usize
}

/// The smallest value of the bucket at `index`.
fn lowest_of(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT_BELOW {
        return index;
    }
    let shift = (index >> HALF_MAGNITUDE) - 1;
    let sub = (index & ((1 << HALF_MAGNITUDE) - 1)) + (1 << HALF_MAGNITUDE);
    sub << shift
}

/// Counts of values per log-linear bucket.
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    /// Grown up to the bucket of the largest value seen.
    counts: Vec<u64>,
}

impl Buckets {
    /// Counts `n` occurrences of `value`.
    #[inline]
    pub fn record_n(&mut self, value: u64, n: u64) {
        let index = index_of(value);
        match self.counts.get_mut(index) {
            Some(count) => *count += n,
            None => self.grow_and_record(index, n),
        }
    }

    #[cold]
    fn grow_and_record(&mut self, index: usize, n: u64) {
        // Up to the end of the value's power-of-two range, as hdrhistogram does.
        self.counts
            .resize((index | ((1 << HALF_MAGNITUDE) - 1)) + 1, 0);
        self.counts[index] += n;
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Buckets) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (ours, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *ours += theirs;
        }
    }

    /// The smallest value of the bucket that holds the `rank`-th smallest
    /// value (from 1), or `None` if fewer values were counted.
    pub fn lowest_at_rank(&self, rank: u64) -> Option<u64> {
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(lowest_of(index));
            }
        }
        None
    }
}

/// Whether `a` and `b` fall in the same bucket.
pub fn same_bucket(a: u64, b: u64) -> bool {
    index_of(a) == index_of(b)
}

/// The smallest value of the bucket `value` falls in.
pub fn lowest_equivalent(value: u64) -> u64 {
    lowest_of(index_of(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    fn probes() -> Vec<u64> {
        let mut values: Vec<u64> = (0..2_000).collect();
        for shift in 0..64 {
            let p = 1u64 << shift;
            values.extend([p - 1, p, p + 1, p | (p >> 1), p.wrapping_mul(3) / 2]);
        }
        values.extend([u64::MAX, u64::MAX - 1, u64::MAX / 3, 123_456_789, 1 << 63]);
        values
    }

    #[test]
    fn buckets_are_those_of_hdrhistogram_at_two_significant_figures() {
        let h = Histogram::<u64>::new(2).unwrap();
        for v in probes() {
            assert_eq!(lowest_equivalent(v), h.lowest_equivalent(v), "{v}");
            assert!(same_bucket(v, h.highest_equivalent(v)), "{v}");
            // (hdrhistogram saturates the end of the top range one short.)
            if v < 1 << 63 {
                assert!(!same_bucket(v, h.highest_equivalent(v) + 1), "{v}");
            }
        }
        assert_eq!(index_of(255), 255);
        assert_eq!(index_of(256), 256);
        assert_eq!(
            (lowest_equivalent(257), lowest_equivalent(1000)),
            (256, 1000)
        );
        assert_eq!(lowest_equivalent(1001), 1000, "width 4 at 1000");
        assert_eq!(index_of(u64::MAX), 58 * 128 - 1);
    }

    #[test]
    fn ranks_land_in_the_bucket_of_the_value_with_that_rank() {
        let mut b = Buckets::default();
        b.record_n(5, 3);
        b.record_n(100_000, 1);
        b.record_n(1_000, 2);
        assert_eq!(b.lowest_at_rank(1), Some(5));
        assert_eq!(b.lowest_at_rank(3), Some(5));
        assert_eq!(b.lowest_at_rank(4), Some(1_000));
        assert_eq!(b.lowest_at_rank(6), Some(lowest_equivalent(100_000)));
        assert_eq!(lowest_equivalent(100_000), 99_840);
        assert_eq!(b.lowest_at_rank(7), None);
        assert_eq!(
            b.counts.len(),
            11 * 128,
            "grown to the end of 100,000's range only"
        );
    }
}
