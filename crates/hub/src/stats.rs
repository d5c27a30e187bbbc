//! What the hub counts for the operator (`/metrics`): pops and withdrawals
//! queued on sockets, and how long a pop took from the packet that caused it
//! to its socket's queue.
//!
//! Counting costs a few relaxed atomic additions inside the critical section
//! the hub already holds: no lock, no allocation. The server reads the values
//! when it is scraped; the hub knows nothing of the exposition format.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the pop latency histogram, in seconds: a pop is meant to
/// take milliseconds; the long tail says a queue was backed up.
pub const POP_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram with fixed buckets, updated with atomics only.
///
/// `buckets[i]` counts the observations in `(bounds[i-1], bounds[i]]`; the
/// last slot counts those above every bound (`+Inf`).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

/// A histogram's values at one instant, as the exposition format wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations in that bucket alone)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (increasing).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records `times` observations of `value`.
    pub fn observe_n(&self, value: f64, times: u64) {
        if times == 0 {
            return;
        }
        let slot = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(times, Relaxed);
        }
        self.count.fetch_add(times, Relaxed);
        let add = value * times as f64;
        // A compare-and-swap loop: contention is one writer (the pipeline) in practice.
        let _ = self.sum_bits.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + add).to_bits())
        });
    }

    /// Records one observation of `value`.
    pub fn observe(&self, value: f64) {
        self.observe_n(value, 1);
    }

    /// The current values. Read without a lock, so a scrape racing an
    /// observation may see its bucket before its count: off by one, once.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|b| b.load(Relaxed)))
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Relaxed),
            sum: f64::from_bits(self.sum_bits.load(Relaxed)),
        }
    }
}

/// The hub's counters.
#[derive(Debug)]
pub struct HubStats {
    pops: AtomicU64,
    withdrawn: AtomicU64,
    pop_latency: Histogram,
}

impl Default for HubStats {
    fn default() -> Self {
        Self {
            pops: AtomicU64::new(0),
            withdrawn: AtomicU64::new(0),
            pop_latency: Histogram::new(POP_LATENCY_BUCKETS),
        }
    }
}

impl HubStats {
    /// Pop messages queued on sockets (one per socket: an agent with two tabs counts twice).
    pub fn pops_sent(&self) -> u64 {
        self.pops.load(Relaxed)
    }

    /// Withdrawal messages queued on sockets.
    pub fn pops_withdrawn(&self) -> u64 {
        self.withdrawn.load(Relaxed)
    }

    /// From the arrival of what made a phone ring (the HEP packet, the AMI
    /// message, the CTI request) to the pop queued on the socket, in seconds.
    pub fn pop_latency(&self) -> HistogramSnapshot {
        self.pop_latency.snapshot()
    }

    pub(crate) fn popped(&self, sockets: u64, latency: Duration) {
        self.pops.fetch_add(sockets, Relaxed);
        self.pop_latency.observe_n(latency.as_secs_f64(), sockets);
    }

    pub(crate) fn withdrew(&self, sockets: u64) {
        self.withdrawn.fetch_add(sockets, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_the_sum() {
        static BOUNDS: &[f64] = &[0.01, 0.1];
        let histogram = Histogram::new(BOUNDS);
        histogram.observe(0.005);
        histogram.observe_n(0.05, 2);
        histogram.observe(3.0);
        let snapshot = histogram.snapshot();
        assert_eq!(
            snapshot.buckets,
            vec![(0.01, 1), (0.1, 2), (f64::INFINITY, 1)]
        );
        assert_eq!(snapshot.count, 4);
        assert!((snapshot.sum - 3.105).abs() < 1e-9, "{}", snapshot.sum);
    }

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        static BOUNDS: &[f64] = &[1.0];
        let histogram = Histogram::new(BOUNDS);
        histogram.observe(1.0);
        assert_eq!(histogram.snapshot().buckets[0], (1.0, 1));
    }
}
