//! A lock-free, fixed-bucket histogram (Prometheus classic histogram) and the bucket layouts
//! of every histogram the store exports.
//!
//! Representation: one `AtomicU64` per finite bucket plus one for the `+Inf` overflow, each
//! counting the observations that fall in that bucket only (not cumulative). The count is the
//! sum of all buckets, so a snapshot's `+Inf` always equals its `_count` and the cumulative
//! buckets never decrease, however observations race with it. The sum is an `AtomicU64` of
//! integer units (`scale` units per 1.0: nanoseconds for seconds, micro-units for rates), added
//! with one `fetch_add`: wait-free, exact and independent of the order of observations (an
//! `f64` sum would need a CAS loop and would depend on that order). Ranges: 2^64 ns is 584
//! years of summed durations; 2^64 micro-units is 1.8·10^13 summed tokens per second.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Request-level durations, seconds: the OpenTelemetry GenAI `operation.duration` boundaries
/// (0.01 … 81.92, doubling) extended by three doublings to 655.36 s for slow cold loads.
pub(crate) const DURATION_BUCKETS: [f64; 17] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84,
    327.68, 655.36,
];

/// Time to first token, seconds: the OpenTelemetry GenAI `time_to_first_token` boundaries
/// (0.001 … 10) extended by 30, 60 and 120 s for cold loads.
pub(crate) const TTFT_BUCKETS: [f64; 19] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    30.0, 60.0, 120.0,
];

/// Time per output token, seconds: the OpenTelemetry GenAI `time_per_output_token` boundaries
/// (0.01 … 2.5) extended by 5 s for models offloaded to the CPU.
pub(crate) const TPOT_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
];

/// Generation speed, tokens per second.
pub(crate) const TOKENS_PER_SECOND_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0,
    1000.0,
];

/// Tokens per request, the OpenTelemetry GenAI `gen_ai.client.token.usage` boundaries
/// (1, 4, 16, … 4^13).
pub(crate) const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Sum units per 1.0 for histograms of whole counts (tokens).
pub(crate) const UNITS: f64 = 1.0;

/// Time a request waited inside Ollama for a parallel slot, seconds: 5 ms … 5 min, in steps
/// that tell apart a free slot (a few ms), one request ahead (a generation's length) and a
/// backlog.
pub const QUEUE_WAIT_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// `ollama_tap_proxy_overhead_seconds` (time in the proxy before the upstream call), seconds:
/// 10 µs … 100 ms.
pub(crate) const OVERHEAD_BUCKETS: [f64; 13] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,
];

/// Sum units per second for histograms of seconds: nanoseconds.
pub(crate) const NANOS: f64 = 1e9;
/// Sum units per 1.0 for histograms of rates: micro-units.
pub(crate) const MICROS: f64 = 1e6;

/// A histogram over `N` fixed upper bounds (ascending, inclusive: `v <= bound`).
#[derive(Debug)]
pub(crate) struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Sum units per 1.0.
    scale: f64,
    buckets: [AtomicU64; N],
    /// Observations above the last bound.
    overflow: AtomicU64,
    /// Sum of observations, in units of `1 / scale`.
    sum: AtomicU64,
}

/// A histogram's figures at one moment, buckets made cumulative.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    pub(crate) bounds: &'static [f64],
    /// Observations `<= bounds[i]`; non-decreasing, each `<= count`.
    pub(crate) cumulative: Vec<u64>,
    /// The `+Inf` bucket and `_count`.
    pub(crate) count: u64,
    pub(crate) sum: f64,
}

/// The `le` label value of a bucket bound, formatted as the Go client library formats floats
/// (`strconv.FormatFloat(v, 'g', -1, 64)`): the shortest round-trip digits, in exponent form
/// (`1e-05`, `2.5e-05`, `1e+06`) when the decimal exponent is below −4 or at least 6, else
/// plain (`0.01`, `1`, `163.84`); `+Inf` for infinity.
pub fn le_label(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v == 0.0 || v.is_nan() {
        return if v.is_nan() { "NaN" } else { "0" }.to_owned();
    }
    let sci = format!("{v:e}"); // shortest digits: "1e-5", "2.5e-5", "1.6384e2"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

// === impl HistogramSnapshot ===

impl HistogramSnapshot {
    /// An empty snapshot over `bounds`.
    #[cfg(test)]
    pub(crate) fn empty(bounds: &'static [f64]) -> Self {
        HistogramSnapshot {
            bounds,
            cumulative: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Adds `other` (a histogram over the same bounds) into this one.
    pub(crate) fn add(&mut self, other: &HistogramSnapshot) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The same figures over the first `n` bounds only: exact, because buckets are
    /// cumulative (the observations above bound `n − 1` stay in `+Inf`).
    pub(crate) fn first_bounds(&self, n: usize) -> HistogramSnapshot {
        let n = n.min(self.bounds.len());
        HistogramSnapshot {
            bounds: &self.bounds[..n],
            cumulative: self.cumulative[..n].to_vec(),
            count: self.count,
            sum: self.sum,
        }
    }
}

// === impl Histogram ===

impl<const N: usize> Histogram<N> {
    /// An empty histogram over `bounds` (ascending) whose sum is kept in `scale` units per 1.0.
    pub(crate) fn new(bounds: &'static [f64; N], scale: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            scale,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Adds one observation. Negative values count as 0; NaN and infinities are dropped (no
    /// metric of the store can produce them, and they would poison the sum).
    pub(crate) fn observe(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let v = v.max(0.0);
        let i = self.bounds.partition_point(|&b| b < v);
        match self.buckets.get(i) {
            Some(b) => b.fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        // `as` saturates; a single observation of 584 years is not a concern.
        self.sum.fetch_add((v * self.scale).round() as u64, Relaxed);
    }

    /// Observes a duration in seconds.
    pub(crate) fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Copies the figures out. Buckets are read once each, so `count` is exactly the sum of
    /// the buckets read; the sum may include an observation whose bucket was not yet read.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Relaxed);
                running
            })
            .collect();
        let count = running + self.overflow.load(Relaxed);
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            count,
            sum: self.sum.load(Relaxed) as f64 / self.scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn observations_land_in_first_bucket_whose_bound_is_not_below() {
        let h = Histogram::new(&[1.0, 2.0, 5.0], MICROS);
        for v in [0.0, 1.0, 1.5, 2.0, 4.99, 5.0, 5.01, 100.0, -3.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        // <=1: 0, 1, -3 (as 0); <=2: + 1.5, 2; <=5: + 4.99, 5; +Inf: + 5.01, 100
        assert_eq!(s.cumulative, vec![3, 5, 7]);
        assert_eq!(s.count, 9);
        assert_eq!(s.sum, 119.5);
        assert_eq!(s.bounds, &[1.0, 2.0, 5.0]);
    }

    #[test]
    fn snapshots_add_up_and_cut_to_their_first_bounds() {
        let a = Histogram::new(&[1.0, 2.0, 5.0], UNITS);
        let b = Histogram::new(&[1.0, 2.0, 5.0], UNITS);
        for v in [1.0, 3.0, 9.0] {
            a.observe(v);
        }
        b.observe(2.0);
        let mut s = a.snapshot();
        s.add(&b.snapshot());
        assert_eq!(
            (s.cumulative.clone(), s.count, s.sum),
            (vec![1, 2, 3], 4, 15.0)
        );
        let cut = s.first_bounds(2);
        assert_eq!(cut.bounds, &[1.0, 2.0]);
        assert_eq!((cut.cumulative, cut.count, cut.sum), (vec![1, 2], 4, 15.0));
        let mut e = HistogramSnapshot::empty(&[1.0, 2.0, 5.0]);
        e.add(&s);
        assert_eq!(e, s);
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        let s = Histogram::new(&DURATION_BUCKETS, NANOS).snapshot();
        assert_eq!(s.cumulative, vec![0; 17]);
        assert_eq!((s.count, s.sum), (0, 0.0));
    }

    #[test]
    fn non_finite_values_are_dropped() {
        let h = Histogram::new(&[1.0], NANOS);
        h.observe(f64::NAN);
        h.observe(f64::INFINITY);
        h.observe(f64::NEG_INFINITY);
        let s = h.snapshot();
        assert_eq!((s.cumulative, s.count, s.sum), (vec![0], 0, 0.0));
    }

    #[test]
    fn duration_sum_is_exact_in_nanoseconds() {
        let h = Histogram::new(&DURATION_BUCKETS, NANOS);
        for ms in 1..=1000 {
            h.observe_duration(Duration::from_millis(ms));
        }
        h.observe_duration(Duration::from_nanos(1));
        let s = h.snapshot();
        assert_eq!(s.sum, 500.500_000_001);
        assert_eq!(s.count, 1001);
        // 0.01 holds 1..=10 ms and the 1 ns; 0.02 adds 11..=20 ms
        assert_eq!(s.cumulative[..2], [11, 21]);
        assert_eq!(s.cumulative[16], 1001);
    }

    #[test]
    fn concurrent_observations_are_exact() {
        const THREADS: u64 = 8;
        const PER: u64 = 20_000;
        let h = Arc::new(Histogram::new(&TPOT_BUCKETS, NANOS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let h = Arc::clone(&h);
                thread::spawn(move || {
                    for i in 0..PER {
                        // 0.02 s in bucket 0.025, 10 s above every bound
                        h.observe(if (t + i) % 2 == 0 { 0.02 } else { 10.0 });
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            let s = h.snapshot();
            assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
            assert!(*s.cumulative.last().unwrap() <= s.count);
        }
        for t in handles {
            t.join().unwrap();
        }
        let s = h.snapshot();
        let half = THREADS * PER / 2;
        assert_eq!(s.count, 2 * half);
        assert_eq!(s.cumulative[0], 0);
        assert_eq!(s.cumulative[1], half);
        assert_eq!(s.cumulative[13], half);
        assert_eq!(s.sum, (half * 10_020_000_000) as f64 / 1e9);
    }

    #[test]
    fn le_labels_match_the_go_client() {
        let got: Vec<String> = OVERHEAD_BUCKETS.iter().map(|&b| le_label(b)).collect();
        let want = [
            "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
            "0.01", "0.025", "0.05", "0.1",
        ];
        assert_eq!(got, want);
        let dur: Vec<String> = DURATION_BUCKETS.iter().map(|&b| le_label(b)).collect();
        assert_eq!(dur[0], "0.01");
        assert_eq!(dur[14], "163.84");
        assert_eq!(dur[16], "655.36");
        assert_eq!(le_label(1.0), "1");
        assert_eq!(le_label(1000.0), "1000");
        assert_eq!(le_label(1e6), "1e+06");
        assert_eq!(le_label(123456.5), "123456.5");
        assert_eq!(le_label(f64::INFINITY), "+Inf");
        assert_eq!(le_label(0.0), "0");
    }

    #[test]
    fn bucket_layouts_are_ascending() {
        fn ascending(b: &[f64]) -> bool {
            b.windows(2).all(|w| w[0] < w[1])
        }
        assert!(ascending(&DURATION_BUCKETS));
        assert!(ascending(&TTFT_BUCKETS));
        assert!(ascending(&TPOT_BUCKETS));
        assert!(ascending(&TOKENS_PER_SECOND_BUCKETS));
        assert!(ascending(&OVERHEAD_BUCKETS));
        assert!(ascending(&QUEUE_WAIT_BUCKETS));
        assert!(ascending(&TOKEN_BUCKETS));
    }
}
