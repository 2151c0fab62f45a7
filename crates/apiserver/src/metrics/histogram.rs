//! A histogram of atomics with fixed buckets: observing takes no lock, so every request
//! of one label set can record its duration at once (prometheus-client's own histogram
//! holds a mutex per label set).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upstream's `apiserver_request_duration_seconds` and `etcd_request_duration_seconds`
/// buckets.
pub const REQUEST_SECONDS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Upstream's admission latency buckets (controller and step).
pub const ADMISSION_SECONDS: &[f64] = &[0.005, 0.025, 0.1, 0.5, 1.0, 2.5];

/// Upstream's `apiserver_watch_events_sizes` buckets: 1 KiB to 128 KiB, ×2.
pub const WATCH_EVENT_BYTES: &[f64] =
    &[1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0];

/// Cheap to clone: clones count into the same buckets.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One more than `bounds`: the last counts what is above every bound (`+Inf`).
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { inner: Arc::new(Inner { bounds, counts, sum: AtomicU64::new(0) }) }
    }

    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let bucket = inner.bounds.partition_point(|bound| *bound < value);
        if let Some(count) = inner.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let _ = inner.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// How many observations there were and their sum.
    #[cfg(test)]
    pub fn totals(&self) -> (u64, f64) {
        let count = self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (count, f64::from_bits(self.inner.sum.load(Ordering::Relaxed)))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let uppers = inner.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        // Per bucket, not cumulative: the encoder adds them up.
        let buckets: Vec<(f64, u64)> =
            uppers.zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_they_fit() {
        let h = Histogram::new(ADMISSION_SECONDS);
        for v in [0.001, 0.005, 0.3, 7.0] {
            h.observe(v);
        }
        let counts: Vec<u64> = h.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        // `le` is inclusive: 0.005 is in the 0.005 bucket, as in client_golang.
        assert_eq!(counts, vec![2, 0, 0, 1, 0, 0, 1]);
        let (count, sum) = h.totals();
        assert_eq!(count, 4);
        assert!((sum - 7.306).abs() < 1e-9);
    }
}
