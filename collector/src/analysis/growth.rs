//! Growth-based leak detection: the trend of a site's live bytes.
//!
//! The series of a site (see [`crate::state::series`]) plus its current value
//! is fitted by least squares over the whole series and over its recent half
//! (a sliding window that follows the series' thinning). Classes:
//!
//! * `leak`: the fit is good (r² ≥ [`MIN_R2`]), the slope positive, the site
//!   grew by at least [`MIN_GROWTH_BYTES`] over at least [`MIN_DURATION_MS`],
//!   and the recent window still grows at half the overall rate or more;
//! * `linear`: the same, but the recent window has slowed down (may plateau);
//! * `spike`: the site rose by at least [`MIN_SPIKE_BYTES`] above both its
//!   first and its current value, to at least twice the higher of them;
//! * `stable`: anything else, including a site that churns at a flat level.
//!
//! Severity, for flagged sites, is the higher of a rate level and a size
//! level (see [`severity`]).

use serde::{Deserialize, Serialize};

use crate::state::series::Point;

/// Least r² of a linear fit to call growth steady.
pub const MIN_R2: f64 = 0.8;
/// Least growth, first to last point, to flag a site.
pub const MIN_GROWTH_BYTES: u64 = 64 << 10;
/// Least time covered by the series to flag a site.
pub const MIN_DURATION_MS: u64 = 1_000;
/// Least points to fit.
pub const MIN_POINTS: usize = 5;
/// Least rise above the surrounding level to call a spike.
pub const MIN_SPIKE_BYTES: u64 = 1 << 20;

/// What the trend of a site looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Flat, or no steady trend.
    Stable,
    /// A temporary rise that came back down.
    Spike,
    /// Steady growth that has slowed down recently.
    Linear,
    /// Steady growth that goes on.
    Leak,
}

/// How bad a flagged trend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Not flagged.
    None,
    /// Under 10 KiB/s and under 10 MiB.
    Low,
    /// From 10 KiB/s or 10 MiB.
    Medium,
    /// From 100 KiB/s or 100 MiB.
    High,
    /// From 1 MiB/s or 1 GiB.
    Critical,
}

/// The verdict on one site's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// The class.
    pub classification: Classification,
    /// The severity (`None` when stable).
    pub severity: Severity,
    /// Slope of the fit over the whole series, bytes per second.
    pub bytes_per_second: f64,
    /// Slope over the recent half, bytes per second.
    pub recent_bytes_per_second: f64,
    /// Coefficient of determination of the whole fit.
    pub r2: f64,
    /// Time the series covers, milliseconds.
    pub duration_ms: u64,
    /// Points fitted.
    pub points: usize,
    /// Live bytes at the first point.
    pub first_bytes: u64,
    /// Live bytes now.
    pub last_bytes: u64,
    /// Highest live bytes in the series.
    pub max_bytes: u64,
}

/// Least-squares slope (per millisecond) and r² of `points`.
fn fit(points: &[Point]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (0.0, 0.0);
    }
    let mx = points.iter().map(|p| p.t_ms as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.bytes as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for p in points {
        let (dx, dy) = (p.t_ms as f64 - mx, p.bytes as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return (0.0, 0.0);
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    (slope, r2)
}

/// The severity of growth at `bytes_per_second` up to `bytes`.
pub fn severity(bytes_per_second: f64, bytes: u64) -> Severity {
    let rate_level = match bytes_per_second {
        r if r >= f64::from(1u32 << 20) => 3,
        r if r >= f64::from(100u32 << 10) => 2,
        r if r >= f64::from(10u32 << 10) => 1,
        _ => 0,
    };
    let size_level = match bytes {
        b if b >= 1 << 30 => 3,
        b if b >= 100 << 20 => 2,
        b if b >= 10 << 20 => 1,
        _ => 0,
    };
    match rate_level.max(size_level) {
        0 => Severity::Low,
        1 => Severity::Medium,
        2 => Severity::High,
        _ => Severity::Critical,
    }
}

/// Classifies the series `history` followed by the current value `now`.
pub fn classify(history: &[Point], now: Point) -> Trend {
    let with_now = history.last().is_none_or(|p| p.t_ms < now.t_ms);
    // A report classifies every site, and most have a short history: their
    // points are gathered on the stack.
    let mut few = [now; MIN_POINTS];
    let mut many = Vec::new();
    let points: &[Point] = if history.len() < MIN_POINTS {
        few[..history.len()].copy_from_slice(history);
        &few[..history.len() + usize::from(with_now)]
    } else {
        many.extend_from_slice(history);
        if with_now {
            many.push(now);
        }
        &many
    };
    let first = points.first().copied().unwrap_or(now);
    let duration_ms = now.t_ms.saturating_sub(first.t_ms);
    let max_bytes = points.iter().map(|p| p.bytes).max().unwrap_or(0);
    let (slope, r2) = fit(points);
    let recent = &points[points.len() / 2..];
    let (recent_slope, _) = fit(recent);
    let mut trend = Trend {
        classification: Classification::Stable,
        severity: Severity::None,
        bytes_per_second: slope * 1000.0,
        recent_bytes_per_second: recent_slope * 1000.0,
        r2,
        duration_ms,
        points: points.len(),
        first_bytes: first.bytes,
        last_bytes: now.bytes,
        max_bytes,
    };
    if points.len() < MIN_POINTS || duration_ms < MIN_DURATION_MS {
        return trend;
    }
    let growth = now.bytes.saturating_sub(first.bytes);
    let base = first.bytes.max(now.bytes);
    if slope > 0.0 && r2 >= MIN_R2 && growth >= MIN_GROWTH_BYTES {
        trend.classification = if recent_slope >= 0.5 * slope {
            Classification::Leak
        } else {
            Classification::Linear
        };
        trend.severity = severity(trend.bytes_per_second, now.bytes);
    } else if max_bytes - base >= MIN_SPIKE_BYTES && max_bytes >= 2 * base {
        trend.classification = Classification::Spike;
        trend.severity = severity(0.0, max_bytes - base);
    }
    trend
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(u64) -> u64, n: u64) -> (Vec<Point>, Point) {
        let pts: Vec<Point> = (0..n)
            .map(|i| Point {
                t_ms: i * 100,
                bytes: f(i),
            })
            .collect();
        (
            pts,
            Point {
                t_ms: n * 100,
                bytes: f(n),
            },
        )
    }

    #[test]
    fn linear_growth_is_a_leak_with_its_exact_rate() {
        // 4 KiB every 10 ms: 40 KiB per 100 ms tick = 409,600 B/s.
        let (h, now) = series(|i| 4096 * 10 * i, 20);
        let t = classify(&h, now);
        assert_eq!(t.classification, Classification::Leak);
        assert!(
            (t.bytes_per_second - 409_600.0).abs() < 1e-6,
            "{}",
            t.bytes_per_second
        );
        assert!((t.r2 - 1.0).abs() < 1e-9);
        assert_eq!(t.duration_ms, 2_000);
        assert_eq!(t.severity, Severity::High);
    }

    #[test]
    fn flat_churn_is_not_flagged() {
        // A pool filled at once, then churned at a level that wobbles by one block.
        let (h, now) = series(|i| if i == 0 { 0 } else { 64_000 + (i % 2) * 64 }, 30);
        let t = classify(&h, now);
        assert_eq!(t.classification, Classification::Stable);
        assert_eq!(t.severity, Severity::None);
        let (h, now) = series(|_| 1 << 20, 30);
        assert_eq!(classify(&h, now).classification, Classification::Stable);
    }

    #[test]
    fn a_rise_that_comes_back_is_a_spike() {
        let (h, now) = series(
            |i| {
                if (10..15).contains(&i) {
                    50 << 20
                } else {
                    1 << 20
                }
            },
            30,
        );
        let t = classify(&h, now);
        assert_eq!(t.classification, Classification::Spike);
        assert_eq!(t.max_bytes, 50 << 20);
        assert_eq!(t.severity, Severity::Medium);
    }

    #[test]
    fn growth_that_stopped_is_linear_and_short_series_are_stable() {
        let (h, now) = series(|i| 100_000 * i.min(20), 30);
        let t = classify(&h, now);
        assert_eq!(t.classification, Classification::Linear, "{t:?}");
        let (h, now) = series(|i| 100_000 * i, 3);
        assert_eq!(classify(&h, now).classification, Classification::Stable);
    }

    #[test]
    fn severity_levels() {
        assert_eq!(severity(1.0, 0), Severity::Low);
        assert_eq!(severity(20_000.0, 0), Severity::Medium);
        assert_eq!(severity(0.0, 200 << 20), Severity::High);
        assert_eq!(severity(2e6, 0), Severity::Critical);
    }
}
