//! A lock-free latency histogram: fixed bucket bounds, one relaxed atomic add for the bucket
//! and one for the sum per observation; read (and made cumulative by the exposition) only when
//! scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bounds of guest request latency, in nanoseconds: an answer from memory takes tens of
/// microseconds, a freshly signed token a few hundred, a delay fault seconds.
pub const GUEST_BOUNDS: &[u64] = &[
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Bounds of a durable store commit (an fsync: a few hundred microseconds on a quiet SSD).
pub const COMMIT_BOUNDS: &[u64] = &[
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Counts of observations per bucket and their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One more than `bounds`: the last counts observations above every bound.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// What a scrape reads of a [`Histogram`].
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramValues {
    pub sum_seconds: f64,
    pub count: u64,
    /// (upper bound in seconds, observations in this bucket alone), `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // Fast answers are the common case: they stop at the first bounds.
        let bucket = self
            .bounds
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn values(&self) -> HistogramValues {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let buckets = self
            .bounds
            .iter()
            .map(|ns| *ns as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        HistogramValues {
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: counts.iter().sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::new(&[1_000, 10_000]);
        histogram.observe(Duration::from_nanos(1_000));
        histogram.observe(Duration::from_nanos(1_001));
        histogram.observe(Duration::from_secs(1));
        let values = histogram.values();
        assert_eq!(values.count, 3);
        assert_eq!(
            values.buckets,
            vec![(0.000_001, 1), (0.000_01, 1), (f64::INFINITY, 1)]
        );
        assert!((values.sum_seconds - 1.000_002_001).abs() < 1e-12);
    }
}
