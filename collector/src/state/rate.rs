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
    /// The bin of the latest record, and the nanoseconds it spans from
    /// `current_start_ns`: a record that falls in it needs no division.
    current: usize,
    current_start_ns: u64,
    current_len_ns: u64,
}

impl Default for RateSeries {
    fn default() -> Self {
        RateSeries {
            bin_ms: FIRST_BIN_MS,
            bins: Vec::new(),
            current: 0,
            current_start_ns: 0,
            current_len_ns: 0,
        }
    }
}

impl RateSeries {
    /// Counts one allocation of `bytes` at `ts_ns`.
    #[inline]
    pub fn record(&mut self, ts_ns: u64, bytes: u64) {
        if ts_ns.wrapping_sub(self.current_start_ns) < self.current_len_ns {
            let bin = &mut self.bins[self.current];
            bin.0 += 1;
            bin.1 += bytes;
        } else {
            self.record_in_new_bin(ts_ns, bytes);
        }
    }

    fn record_in_new_bin(&mut self, ts_ns: u64, bytes: u64) {
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
        // Bin i spans [i * bin_ms, (i + 1) * bin_ms) ms, below `ts_ns`: no overflow.
        self.current = i;
        self.current_len_ns = self.bin_ms * 1_000_000;
        self.current_start_ns = i as u64 * self.current_len_ns;
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
    fn records_land_in_the_bin_their_time_divides_into() {
        let mut r = RateSeries::default();
        let ms = 1_000_000;
        // Out of order, on bin edges, across two widenings.
        let times = [
            0,
            99 * ms + 999_999,
            100 * ms,
            50 * ms,
            25_599 * ms,
            25_600 * ms,
            150 * ms,
            70_000 * ms,
            199 * ms,
        ];
        for (k, &t) in times.iter().enumerate() {
            r.record(t, k as u64);
        }
        assert_eq!(r.bin_ms(), 400);
        let bins: Vec<(u64, u64, u64)> = r
            .bins()
            .iter()
            .filter(|b| b.allocs > 0)
            .map(|b| (b.t_ms, b.allocs, b.bytes))
            .collect();
        // 0, 99.99, 100, 50, 150, 199 ms in bin 0; 25,599 in 25,200; 25,600 and 70,000.
        assert_eq!(
            bins,
            [
                (0, 6, 1 + 2 + 3 + 6 + 8),
                (25_200, 1, 4),
                (25_600, 1, 5),
                (70_000, 1, 7)
            ]
        );
    }

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
