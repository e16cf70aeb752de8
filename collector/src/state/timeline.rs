//! A bounded time series of process-wide memory samples.

use serde::{Deserialize, Serialize};

/// Most samples kept per process; older history is thinned, never dropped wholesale.
const CAPACITY: usize = 512;

/// One point of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since process start.
    pub t_ms: u64,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Bytes the allocator holds from the system.
    pub heap_bytes: u64,
    /// Requested bytes live at that moment, as rebuilt by the collector.
    pub live_bytes: u64,
    /// Bytes the allocator considers in use (`mallinfo2`).
    #[serde(default)]
    pub heap_in_use_bytes: u64,
    /// Usable bytes (`malloc_usable_size`) of the live blocks.
    #[serde(default)]
    pub usable_bytes: u64,
    /// Bytes mapped by the program with `mmap` (not heap).
    #[serde(default)]
    pub mmap_bytes: u64,
}

/// Samples at a stride that doubles whenever the series is full.
#[derive(Debug, Clone)]
pub struct Timeline {
    samples: Vec<Sample>,
    stride: u64,
    offered: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            samples: Vec::new(),
            stride: 1,
            offered: 0,
        }
    }
}

impl Timeline {
    /// Offers one sample; it is kept if it falls on the current stride.
    pub fn record(&mut self, sample: Sample) {
        let keep = self.offered % self.stride == 0;
        self.offered += 1;
        if !keep {
            return;
        }
        if self.samples.len() == CAPACITY {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
            if (self.offered - 1) % self.stride != 0 {
                return;
            }
        }
        self.samples.push(sample);
    }

    /// The kept samples, oldest first.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_spans_the_whole_run() {
        let mut t = Timeline::default();
        for i in 0..10_000 {
            t.record(Sample {
                t_ms: i,
                rss_bytes: 0,
                heap_bytes: 0,
                live_bytes: 0,
                heap_in_use_bytes: 0,
                usable_bytes: 0,
                mmap_bytes: 0,
            });
        }
        let s = t.samples();
        assert!(
            s.len() <= CAPACITY && s.len() >= CAPACITY / 2,
            "{}",
            s.len()
        );
        assert_eq!(s[0].t_ms, 0);
        assert!(s.last().unwrap().t_ms > 9_000);
        assert!(s.windows(2).all(|w| w[1].t_ms - w[0].t_ms == t.stride));
    }
}
