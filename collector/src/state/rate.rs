//! Allocation rate over time: counts per time bin, bins widened as time passes.

use serde::{Deserialize, Serialize};

/// Most bins kept; when exceeded, neighbouring bins merge and the width doubles.
const RATE_BINS: usize = 256;
/// Width of a bin at start.
const FIRST_BIN_MS: u64 = 100;

/// One bin of the allocation-rate series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateBin {
    /// Start of the bin, milliseconds since process start.
    pub t_ms: u64,
    /// Allocations in the bin.
    pub allocs: u64,
    /// Requested bytes in the bin.
    pub bytes: u64,
}

/// Allocations per time bin since process start.
#[derive(Debug, Clone)]
pub struct RateSeries {
    bin_ms: u64,
    bins: Vec<(u64, u64)>,
}

impl Default for RateSeries {
    fn default() -> Self {
        RateSeries {
            bin_ms: FIRST_BIN_MS,
            bins: Vec::new(),
        }
    }
}

impl RateSeries {
    /// Counts one allocation of `bytes` at `ts_ns`.
    pub fn record(&mut self, ts_ns: u64, bytes: u64) {
        let t_ms = ts_ns / 1_000_000;
        let mut i = (t_ms / self.bin_ms) as usize;
        while i >= RATE_BINS {
            let merged: Vec<(u64, u64)> = self
                .bins
                .chunks(2)
                .map(|c| c.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)))
                .collect();
            self.bins = merged;
            self.bin_ms *= 2;
            i = (t_ms / self.bin_ms) as usize;
        }
        if self.bins.len() <= i {
            self.bins.resize(i + 1, (0, 0));
        }
        self.bins[i].0 += 1;
        self.bins[i].1 += bytes;
    }

    /// Width of a bin in milliseconds.
    pub fn bin_ms(&self) -> u64 {
        self.bin_ms
    }

    /// The bins from process start, empty ones included.
    pub fn bins(&self) -> Vec<RateBin> {
        self.bins
            .iter()
            .enumerate()
            .map(|(i, &(allocs, bytes))| RateBin {
                t_ms: i as u64 * self.bin_ms,
                allocs,
                bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_widen_and_keep_every_count() {
        let mut r = RateSeries::default();
        for s in 0..100u64 {
            for _ in 0..10 {
                r.record(s * 1_000_000_000, 8);
            }
        }
        assert!(r.bins().len() <= RATE_BINS);
        assert_eq!(r.bin_ms(), 400);
        assert_eq!(r.bins().iter().map(|b| b.allocs).sum::<u64>(), 1000);
        assert_eq!(r.bins().iter().map(|b| b.bytes).sum::<u64>(), 8000);
        assert_eq!(r.bins()[0].allocs, 10);
    }
}
