//! A lock-free log-linear latency histogram from 1 µs to 10 s: ten buckets per decade
//! (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k), so any percentile is within 25 % of the truth.
//! Recording is two relaxed atomic adds and a binary search over 71 bounds: no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

const MANTISSAS: [u64; 10] = [100, 125, 150, 200, 250, 300, 400, 500, 600, 800];
/// Finite bucket upper bounds, in nanoseconds; the last bucket (+Inf) follows them.
pub const BOUNDS_NS: [u64; 71] = bounds();
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

const fn bounds() -> [u64; 71] {
    let mut b = [0u64; 71];
    let mut decade = 0;
    let mut scale = 10u64; // 1 µs = 1000 ns = 100 × 10
    while decade < 7 {
        let mut m = 0;
        while m < 10 {
            b[decade * 10 + m] = MANTISSAS[m] * scale;
            m += 1;
        }
        scale *= 10;
        decade += 1;
    }
    b[70] = 10_000_000_000; // 10 s
    b
}

/// Whether a bound is one of the coarse Prometheus buckets (1, 2.5, 5 × 10^k).
pub fn is_coarse(bound_ns: u64) -> bool {
    let mut m = bound_ns;
    while m >= 1000 && m.is_multiple_of(10) {
        m /= 10;
    }
    matches!(m, 100 | 250 | 500) || bound_ns == BOUNDS_NS[70]
}

pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const Z: AtomicU64 = AtomicU64::new(0);
        Histogram {
            counts: [Z; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn bucket_of(ns: u64) -> usize {
        BOUNDS_NS.partition_point(|&b| b < ns)
    }

    pub fn record(&self, ns: u64) {
        self.counts[Self::bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
        self.sum_ns.store(0, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Snapshot {
        let mut counts = [0u64; BUCKETS];
        for (c, a) in counts.iter_mut().zip(self.counts.iter()) {
            *c = a.load(Ordering::Relaxed);
        }
        Snapshot {
            counts,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl Snapshot {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The q-quantile in nanoseconds, interpolated linearly inside its bucket; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BOUNDS_NS[i - 1] } as f64;
                let hi = BOUNDS_NS.get(i).map_or(lo * 2.0, |&b| b as f64);
                let frac = (rank - seen as f64) / c as f64;
                return lo + (hi - lo) * frac;
            }
            seen += c;
        }
        BOUNDS_NS[70] as f64
    }

    /// (upper bound in seconds or +Inf, cumulative count) at the coarse Prometheus bounds.
    pub fn prometheus_buckets(&self) -> Vec<(Option<f64>, u64)> {
        let mut out = Vec::new();
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += c;
            match BOUNDS_NS.get(i) {
                Some(&b) if is_coarse(b) => out.push((Some(b as f64 / 1e9), cum)),
                Some(_) => {}
                None => out.push((None, cum)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_log_linear() {
        assert_eq!(BOUNDS_NS[0], 1_000);
        assert_eq!(BOUNDS_NS[1], 1_250);
        assert_eq!(BOUNDS_NS[10], 10_000);
        assert_eq!(BOUNDS_NS[69], 8_000_000_000);
        assert_eq!(BOUNDS_NS[70], 10_000_000_000);
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn buckets_and_quantiles() {
        let h = Histogram::new();
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(1_000), 0);
        assert_eq!(Histogram::bucket_of(1_001), 1);
        assert_eq!(Histogram::bucket_of(u64::MAX), BUCKETS - 1);
        for i in 1..=1000u64 {
            h.record(i * 1_000); // 1 µs .. 1 ms uniformly
        }
        let s = h.snapshot();
        assert_eq!(s.total(), 1000);
        for (q, truth) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let est = s.quantile_ns(q);
            assert!(
                (est - truth).abs() / truth <= 0.25,
                "q{q}: {est} vs {truth}"
            );
        }
        h.reset();
        assert_eq!(h.snapshot().total(), 0);
        assert_eq!(h.snapshot().quantile_ns(0.5), 0.0);
    }

    #[test]
    fn prometheus_buckets_are_cumulative_and_end_in_inf() {
        let h = Histogram::new();
        h.record(3_000);
        h.record(20_000_000_000);
        let b = h.snapshot().prometheus_buckets();
        assert_eq!(b.len(), 23);
        assert_eq!(b.last().unwrap(), &(None, 2));
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(b[0], (Some(1e-6), 0));
        assert_eq!(b[2], (Some(5e-6), 1));
    }
}
