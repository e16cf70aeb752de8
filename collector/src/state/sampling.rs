//! Unbiased estimates from a sampled stream, with their uncertainty.
//!
//! In sampled mode (`MEMSHIM_SAMPLE_BYTES = mean`) the shim records an
//! allocation of `size` bytes with probability `p = 1 - exp(-size / mean)`,
//! or 1 when `size >= mean`. Weighting each record by `1 / p` gives the
//! Horvitz–Thompson estimator of any total — unbiased whatever the mix of
//! sizes — and its variance is estimated by `Σ (w² - w) y²` over the records.
//! Reports print the estimate with a 99 % interval (±2.576 σ), so a reader
//! knows how many samples stand behind a figure: something no peer shows.

use serde::{Deserialize, Serialize};

/// The weight of one record: the inverse of its probability of being sampled.
pub fn weight(size: u64, mean: u64) -> f64 {
    if mean == 0 || size >= mean {
        return 1.0;
    }
    let p = -(-(size.max(1) as f64) / mean as f64).exp_m1();
    1.0 / p
}

/// An estimated total and the estimated variance of that estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimated total.
    pub value: f64,
    /// Its estimated variance.
    pub variance: f64,
}

impl Estimate {
    /// Adds a record of value `y` and weight `w`.
    pub fn add(&mut self, y: f64, w: f64) {
        self.value += w * y;
        self.variance += (w * w - w) * y * y;
    }

    /// Takes back a record added before (a live block that was freed).
    pub fn sub(&mut self, y: f64, w: f64) {
        self.value -= w * y;
        self.variance = (self.variance - (w * w - w) * y * y).max(0.0);
    }

    /// Half-width of the 99 % confidence interval.
    pub fn ci99(&self) -> f64 {
        2.576 * self.variance.sqrt()
    }

    /// The sum of two independent estimates.
    pub fn plus(self, other: Estimate) -> Estimate {
        Estimate {
            value: self.value + other.value,
            variance: self.variance + other.variance,
        }
    }
}

/// A site's estimated totals (kept only in sampled mode).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SiteEstimates {
    /// Allocation calls.
    pub calls: Estimate,
    /// Bytes allocated.
    pub bytes: Estimate,
    /// Blocks live now.
    pub live_blocks: Estimate,
    /// Bytes live now.
    pub live_bytes: Estimate,
}

impl SiteEstimates {
    /// An allocation of `size` was recorded.
    pub fn on_alloc(&mut self, size: u64, mean: u64) {
        let w = weight(size, mean);
        self.calls.add(1.0, w);
        self.bytes.add(size as f64, w);
    }

    /// A block of `size` became live (`live = true`) or stopped being live.
    pub fn on_live(&mut self, size: u64, mean: u64, live: bool) {
        let w = weight(size, mean);
        if live {
            self.live_blocks.add(1.0, w);
            self.live_bytes.add(size as f64, w);
        } else {
            self.live_blocks.sub(1.0, w);
            self.live_bytes.sub(size as f64, w);
        }
    }

    /// The sum over independent sites.
    pub fn plus(self, o: SiteEstimates) -> SiteEstimates {
        SiteEstimates {
            calls: self.calls.plus(o.calls),
            bytes: self.bytes.plus(o.bytes),
            live_blocks: self.live_blocks.plus(o.live_blocks),
            live_bytes: self.live_bytes.plus(o.live_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_the_sampling_probability() {
        assert_eq!(weight(4096, 0), 1.0);
        assert_eq!(weight(1 << 20, 1 << 19), 1.0);
        let w = weight(512, 512 * 1024);
        assert!((w - 1024.5).abs() < 0.01, "{w}");
    }

    #[test]
    fn the_estimator_is_unbiased_over_the_sampling_process() {
        // Simulate the shim's Bernoulli decisions with a fixed-seed generator.
        let (mean, size, n) = (4096u64, 100u64, 10_000u64);
        let p = 1.0 / weight(size, mean);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut covered = 0;
        for _ in 0..100 {
            let mut e = Estimate::default();
            for _ in 0..n {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng >> 11) as f64 / (1u64 << 53) as f64 <= p {
                    e.add(size as f64, weight(size, mean));
                }
            }
            if (e.value - (size * n) as f64).abs() <= e.ci99() {
                covered += 1;
            }
        }
        assert!(covered >= 95, "{covered} of 100 intervals cover the truth");
    }
}
