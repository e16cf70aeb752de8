//! Value distributions with percentiles: exact while a site has seen few
//! distinct values (the common case: one or two sizes per call site), an
//! `hdrhistogram` (two significant figures) beyond that.
//!
//! Percentiles use the nearest-rank definition (the smallest value with at
//! least `q * count` values at or below it). In exact mode they are exact; in
//! histogram mode they are the lower bound of the value's histogram bucket,
//! clamped to the exact minimum and maximum, so they are exact for values
//! below 256 and for values on bucket boundaries, and within 1 % otherwise.

use hdrhistogram::Histogram;

/// Distinct values kept exactly before switching to a histogram.
const EXACT_SLOTS: usize = 8;
/// Significant figures of the histogram.
const SIGFIG: u8 = 2;

#[derive(Debug, Clone)]
enum Repr {
    /// `(value, count)` sorted by value.
    Exact(Vec<(u64, u64)>),
    /// Too many distinct values.
    Hdr(Box<Histogram<u64>>),
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
            repr: Repr::Exact(Vec::new()),
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

fn hdr_record(h: &mut Histogram<u64>, value: u64, n: u64) {
    if h.record_n(value, n).is_err() {
        h.saturating_record_n(value, n);
    }
}

impl Distribution {
    /// Counts one value.
    pub fn record(&mut self, value: u64) {
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
        match &mut self.repr {
            Repr::Exact(slots) => match slots.binary_search_by_key(&value, |&(v, _)| v) {
                Ok(i) => slots[i].1 += 1,
                Err(i) if slots.len() < EXACT_SLOTS => slots.insert(i, (value, 1)),
                Err(_) => {
                    let mut h = Histogram::<u64>::new(SIGFIG).unwrap_or_else(|_| {
                        unreachable!("2 significant figures is a valid precision")
                    });
                    for &(v, n) in slots.iter() {
                        hdr_record(&mut h, v, n);
                    }
                    hdr_record(&mut h, value, 1);
                    self.repr = Repr::Hdr(Box::new(h));
                }
            },
            Repr::Hdr(h) => hdr_record(h, value, 1),
        }
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
        matches!(self.repr, Repr::Exact(_))
    }

    /// The nearest-rank percentile `q` in `[0, 1]` (0 when empty).
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        match &self.repr {
            Repr::Exact(slots) => {
                let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
                let mut seen = 0;
                for &(v, n) in slots {
                    seen += n;
                    if seen >= rank {
                        return v;
                    }
                }
                self.max
            }
            Repr::Hdr(h) => {
                let raw = h.value_at_quantile(q.clamp(0.0, 1.0));
                if h.equivalent(raw, self.max) {
                    self.max
                } else if h.equivalent(raw, self.min) {
                    self.min
                } else {
                    h.lowest_equivalent(raw).clamp(self.min, self.max)
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
