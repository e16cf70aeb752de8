//! Fixed-size per-site series of live bytes over time, for growth analysis.
//!
//! A site's live bytes are sampled on the session's tick (every
//! [`TICK_NS`] of process time). The series keeps at most [`SERIES_POINTS`]
//! points: when full, every other point is dropped and the sampling stride
//! doubles, so the series always spans the site's whole history at a
//! resolution that coarsens as time passes (memory stays constant per site).

/// Process time between two samples of every site's live bytes.
pub const TICK_NS: u64 = 100_000_000;
/// Most points kept per site.
pub const SERIES_POINTS: usize = 48;

/// One sample: milliseconds since process start, live bytes then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Milliseconds since process start.
    pub t_ms: u64,
    /// Live requested bytes of the site.
    pub bytes: u64,
}

/// The thinned series of one site.
#[derive(Debug, Clone, Default)]
pub struct LiveSeries {
    points: Vec<Point>,
    stride: u32,
    offered: u32,
}

impl LiveSeries {
    /// Offers one sample; it is kept when it falls on the current stride.
    pub fn record(&mut self, point: Point) {
        let stride = self.stride.max(1);
        let keep = self.offered % stride == 0;
        self.offered = self.offered.wrapping_add(1);
        if !keep {
            return;
        }
        if self.points.len() >= SERIES_POINTS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = stride.saturating_mul(2);
            if (self.offered - 1) % self.stride != 0 {
                return;
            }
        }
        self.points.push(point);
    }

    /// The kept points, oldest first.
    pub fn points(&self) -> &[Point] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_spans_the_history() {
        let mut s = LiveSeries::default();
        for i in 0..100_000u64 {
            s.record(Point {
                t_ms: i * 100,
                bytes: i,
            });
        }
        let p = s.points();
        assert!(p.len() <= SERIES_POINTS && p.len() >= SERIES_POINTS / 2);
        assert_eq!(p[0].t_ms, 0);
        assert!(p.last().unwrap().t_ms > 9_000_000);
        let step = p[1].t_ms - p[0].t_ms;
        assert!(p.windows(2).all(|w| w[1].t_ms - w[0].t_ms == step));
    }
}
