//! Value distributions with percentiles: exact while a site has seen few
//! distinct values (the common case: one or two sizes per call site),
//! log-linear [`Buckets`] laid out as an `hdrhistogram` of two significant
//! figures beyond that.
//!
//! Percentiles use the nearest-rank definition (the smallest value with at
//! least `q * count` values at or below it). In exact mode they are exact; in
//! histogram mode they are the lower bound of the value's histogram bucket,
//! clamped to the exact minimum and maximum, so they are exact for values
//! below 256 and for values on bucket boundaries, and within 1 % otherwise.

use super::buckets::{lowest_equivalent, same_bucket, Buckets};

/// Distinct values kept exactly before switching to buckets.
const EXACT_SLOTS: usize = 8;

#[derive(Debug, Clone)]
enum Repr {
    /// Up to [`EXACT_SLOTS`] distinct values and their counts, in the order
    /// they first came (sorted when read): a site's one or two sizes are
    /// found at once, with no search.
    Exact {
        len: u8,
        values: [u64; EXACT_SLOTS],
        counts: [u64; EXACT_SLOTS],
    },
    /// Too many distinct values.
    Buckets(Buckets),
}

/// A distribution of non-negative integer values.
#[derive(Debug, Clone)]
pub struct Distribution {
    repr: Repr,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            repr: Repr::Exact {
                len: 0,
                values: [0; EXACT_SLOTS],
                counts: [0; EXACT_SLOTS],
            },
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl Distribution {
    /// Counts one value: O(1), no float math.
    #[inline(always)]
    pub fn record(&mut self, value: u64) {
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
        self.count_value(value, 1);
    }

    /// Adds every value of `other`, as if each had been recorded here.
    pub fn merge(&mut self, other: &Distribution) {
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        match &other.repr {
            Repr::Exact { .. } => {
                let (pairs, n) = other.exact_values();
                for &(v, c) in &pairs[..n] {
                    self.count_value(v, c);
                }
            }
            Repr::Buckets(theirs) => {
                if self.is_exact() {
                    self.repr = Repr::Buckets(self.exact_to_buckets());
                }
                if let Repr::Buckets(ours) = &mut self.repr {
                    ours.merge(theirs);
                }
            }
        }
    }

    /// Counts `n` occurrences of `value` in the representation (not in the totals).
    #[inline(always)]
    fn count_value(&mut self, value: u64, n: u64) {
        match &mut self.repr {
            Repr::Exact {
                len,
                values,
                counts,
            } => {
                let used = usize::from(*len);
                // All slots compared at once, without a branch per slot: a
                // site's sizes come in no order a predictor could learn.
                let mut hits = 0u32;
                for (i, &v) in values.iter().enumerate() {
                    hits |= u32::from(v == value) << i;
                }
                hits &= (1u32 << used) - 1;
                if hits != 0 {
                    counts[hits.trailing_zeros() as usize] += n;
                } else if used < EXACT_SLOTS {
                    values[used] = value;
                    counts[used] = n;
                    *len += 1;
                } else {
                    self.spill(value, n);
                }
            }
            Repr::Buckets(b) => b.record_n(value, n),
        }
    }

    /// Moves the exact values to buckets, with `value`, a distinct one too many.
    #[cold]
    fn spill(&mut self, value: u64, n: u64) {
        let mut buckets = self.exact_to_buckets();
        buckets.record_n(value, n);
        self.repr = Repr::Buckets(buckets);
    }

    /// The exact values in buckets.
    fn exact_to_buckets(&self) -> Buckets {
        let mut buckets = Buckets::default();
        let (pairs, n) = self.exact_values();
        for &(v, c) in &pairs[..n] {
            buckets.record_n(v, c);
        }
        buckets
    }

    /// The exact values and their counts, by value (empty past [`EXACT_SLOTS`] values).
    /// On the stack: reports ask this of every site (a percentile, a merge
    /// into the process's summary), thousands of times for a large program.
    fn exact_values(&self) -> ([(u64, u64); EXACT_SLOTS], usize) {
        let mut pairs = [(0, 0); EXACT_SLOTS];
        let Repr::Exact {
            len,
            values,
            counts,
        } = &self.repr
        else {
            return (pairs, 0);
        };
        let n = usize::from(*len);
        for (pair, (&v, &c)) in pairs.iter_mut().zip(values.iter().zip(counts)).take(n) {
            *pair = (v, c);
        }
        pairs[..n].sort_unstable_by_key(|&(v, _)| v);
        (pairs, n)
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value (0 when empty).
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Arithmetic mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// Whether the percentiles are exact.
    pub fn is_exact(&self) -> bool {
        matches!(self.repr, Repr::Exact { .. })
    }

    /// The nearest-rank percentile `q` in `[0, 1]` (0 when empty).
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        match &self.repr {
            Repr::Exact { .. } => {
                let mut seen = 0;
                let (pairs, n) = self.exact_values();
                for &(v, c) in &pairs[..n] {
                    seen += c;
                    if seen >= rank {
                        return v;
                    }
                }
                self.max
            }
            Repr::Buckets(b) => {
                let raw = b.lowest_at_rank(rank).unwrap_or(0);
                if same_bucket(raw, self.max) {
                    self.max
                } else if same_bucket(raw, self.min) {
                    self.min
                } else {
                    lowest_equivalent(raw).clamp(self.min, self.max)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_percentiles_for_few_distinct_values() {
        let mut d = Distribution::default();
        for _ in 0..50 {
            d.record(64);
        }
        for _ in 0..40 {
            d.record(1024);
        }
        for _ in 0..10 {
            d.record(100_000);
        }
        assert!(d.is_exact());
        assert_eq!(d.percentile(0.5), 64);
        assert_eq!(d.percentile(0.9), 1024);
        assert_eq!(d.percentile(0.91), 100_000);
        assert_eq!(d.percentile(0.99), 100_000);
        assert_eq!((d.min(), d.max(), d.count()), (64, 100_000, 100));
    }

    /// The percentiles as the collector computed them with an `hdrhistogram`
    /// past 8 distinct values, before it kept its own buckets.
    fn hdr_percentile(values: &[u64], q: f64) -> u64 {
        let mut h = hdrhistogram::Histogram::<u64>::new(2).unwrap();
        for &v in values {
            h.record(v).unwrap();
        }
        let (min, max) = (*values.iter().min().unwrap(), *values.iter().max().unwrap());
        let raw = h.value_at_quantile(q.clamp(0.0, 1.0));
        if h.equivalent(raw, max) {
            max
        } else if h.equivalent(raw, min) {
            min
        } else {
            h.lowest_equivalent(raw).clamp(min, max)
        }
    }

    #[test]
    fn bucket_percentiles_are_those_of_hdrhistogram() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let shapes: [&dyn Fn(u64) -> u64; 5] = [
            &|r| r % 300,
            &|r| 16 + (r % 496),
            &|r| 1 << (r % 40),
            &|r| (r % 7) * 4096 + (r >> 60),
            &|r| r >> (r % 64),
        ];
        let qs = [
            0.0,
            0.01,
            0.25,
            0.5,
            0.9,
            0.99,
            0.999,
            1.0,
            1.5,
            -1.0,
            f64::NAN,
        ];
        for shape in shapes {
            for n in [9, 10, 100, 5_000] {
                let values: Vec<u64> = (0..n).map(|_| shape(next())).collect();
                let mut d = Distribution::default();
                values.iter().for_each(|&v| d.record(v));
                let distinct = values
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                assert_eq!(d.is_exact(), distinct <= EXACT_SLOTS);
                if d.is_exact() {
                    continue;
                }
                for q in qs {
                    assert_eq!(d.percentile(q), hdr_percentile(&values, q), "q {q}, n {n}");
                }
            }
        }
    }

    #[test]
    fn the_ninth_distinct_value_switches_to_buckets() {
        let mut d = Distribution::default();
        for v in [300, 100, 200, 100, 800, 700, 600, 500, 400] {
            d.record(v);
        }
        assert!(d.is_exact());
        assert_eq!(d.percentile(0.2), 100);
        assert_eq!(d.percentile(0.3), 200);
        assert_eq!(d.percentile(1.0), 800);
        d.record(1001);
        assert!(!d.is_exact());
        assert_eq!((d.count(), d.min(), d.max()), (10, 100, 1001));
        assert_eq!(d.percentile(0.2), 100);
        assert_eq!(d.percentile(0.8), 700);
        assert_eq!(d.percentile(0.9), 800);
        assert_eq!(d.percentile(0.95), 1001);
        assert_eq!(d.mean(), 4701.0 / 10.0);
    }

    #[test]
    fn a_merge_is_the_distribution_of_all_the_values() {
        let parts: [&[u64]; 5] = [
            &[16, 16, 32],
            &[48, 16, 64],
            &[],
            &[80, 96, 112, 128, 144],
            &(1..=40).map(|v| v * 1_000).collect::<Vec<_>>(),
        ];
        // Exact and exact within 8 values; past 8 values; with buckets.
        for upto in [2, 3, 4, 5] {
            let mut merged = Distribution::default();
            let mut whole = Distribution::default();
            for part in &parts[..upto] {
                let mut d = Distribution::default();
                for &v in part.iter() {
                    d.record(v);
                    whole.record(v);
                }
                merged.merge(&d);
            }
            assert_eq!(merged.is_exact(), upto < 4, "{upto} parts");
            assert_eq!(merged.is_exact(), whole.is_exact());
            let summary = |d: &Distribution| (d.count(), d.min(), d.max(), d.mean());
            assert_eq!(summary(&merged), summary(&whole));
            for q in [0.0, 0.1, 0.3, 0.5, 0.75, 0.9, 0.99, 1.0] {
                assert_eq!(
                    merged.percentile(q),
                    whole.percentile(q),
                    "{upto} parts, q {q}"
                );
            }
        }
    }

    #[test]
    fn many_values_switch_to_the_histogram_and_stay_close() {
        let mut d = Distribution::default();
        for v in 1..=10_000u64 {
            d.record(v);
        }
        assert!(!d.is_exact());
        assert_eq!(d.count(), 10_000);
        assert_eq!(d.max(), 10_000);
        let p50 = d.percentile(0.5) as f64;
        assert!((p50 - 5_000.0).abs() / 5_000.0 < 0.01, "{p50}");
        assert_eq!(d.percentile(1.0), 10_000);
        assert_eq!(d.percentile(0.0), 1);
        assert_eq!(Distribution::default().percentile(0.5), 0);
    }
}
