//! A bounded window of the last N observations (for quantiles) plus a cumulative sum and count.

/// The most recent `cap` observations in a ring, and the sum and count of every observation
/// since creation.
///
/// The ring's buffer is allocated once, at the first observation (so a model that never
/// succeeds costs no window memory); after that, [`Window::observe`] never allocates.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    cap: usize,
    /// Up to `cap` values; once full, `next` is the slot the next observation overwrites.
    ring: Vec<f64>,
    next: usize,
    sum: f64,
    count: u64,
}

/// Nearest-rank quantile of an ascending, non-empty slice: index `ceil(q·n) − 1`, clamped to
/// `[0, n−1]`, so `q = 0` is the minimum and `q = 1` the maximum.
///
/// A tiny slack (1e-9) is taken off `q·n` before `ceil` so that products that are integral in
/// decimal but land a hair above in binary (e.g. `0.95 · 20`) do not skip to the next rank.
pub(crate) fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let n = sorted.len();
    let rank = (q * n as f64 - 1e-9).ceil();
    let idx = if rank < 1.0 {
        0
    } else {
        (rank as usize - 1).min(n - 1)
    };
    sorted[idx]
}

// === impl Window ===

impl Window {
    /// A window keeping the last `cap` observations. `cap == 0` keeps only sum and count.
    pub(crate) fn new(cap: usize) -> Self {
        Window {
            cap,
            ring: Vec::new(),
            next: 0,
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds one observation.
    pub(crate) fn observe(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        if self.cap == 0 {
            return;
        }
        if self.ring.len() < self.cap {
            if self.ring.capacity() == 0 {
                self.ring.reserve_exact(self.cap);
            }
            self.ring.push(v);
        } else {
            self.ring[self.next] = v;
        }
        self.next = (self.next + 1) % self.cap;
    }

    /// Sum of every observation since creation (not only those still in the window).
    pub(crate) fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations since creation (not only those still in the window).
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The observations currently in the window, in storage (not time) order.
    pub(crate) fn values(&self) -> &[f64] {
        &self.ring
    }

    /// Nearest-rank quantiles over the window, one per entry of `qs`; empty when the window
    /// holds no observations. Sorts a copy; for the hot path, copy [`Window::values`] out under
    /// the lock and sort outside it instead.
    #[cfg(test)]
    pub(crate) fn quantiles(&self, qs: &[f64]) -> Vec<f64> {
        if self.ring.is_empty() {
            return Vec::new();
        }
        let mut sorted = self.ring.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        qs.iter().map(|&q| nearest_rank(&sorted, q)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(cap: usize, vals: impl IntoIterator<Item = f64>) -> Window {
        let mut w = Window::new(cap);
        for v in vals {
            w.observe(v);
        }
        w
    }

    #[test]
    fn empty_window_has_no_quantiles() {
        let w = Window::new(10);
        assert!(w.quantiles(&[0.5]).is_empty());
        assert_eq!(w.sum(), 0.0);
        assert_eq!(w.count(), 0);
        assert!(w.values().is_empty());
    }

    #[test]
    fn fewer_than_cap() {
        let w = filled(10, [3.0, 1.0, 2.0]);
        assert_eq!(w.values().len(), 3);
        assert_eq!(w.quantiles(&[0.0, 0.5, 1.0]), vec![1.0, 2.0, 3.0]);
        assert_eq!(w.sum(), 6.0);
        assert_eq!(w.count(), 3);
    }

    #[test]
    fn exactly_cap() {
        let w = filled(4, [4.0, 3.0, 2.0, 1.0]);
        assert_eq!(w.values().len(), 4);
        assert_eq!(
            w.quantiles(&[0.0, 0.25, 0.5, 0.75, 1.0]),
            vec![1.0, 1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(w.count(), 4);
    }

    #[test]
    fn wrap_keeps_only_last_cap() {
        let w = filled(3, (1..=10).map(f64::from));
        let mut v = w.values().to_vec();
        v.sort_by(f64::total_cmp);
        assert_eq!(v, vec![8.0, 9.0, 10.0]);
        assert_eq!(w.quantiles(&[0.0, 1.0]), vec![8.0, 10.0]);
        // sum and count are cumulative across the wrap
        assert_eq!(w.sum(), 55.0);
        assert_eq!(w.count(), 10);
        assert_eq!(w.ring.capacity(), 3);
    }

    #[test]
    fn quantile_math_one_to_hundred() {
        let w = filled(1000, (1..=100).rev().map(f64::from));
        let q = w.quantiles(&[0.0, 0.5, 0.95, 0.99, 1.0]);
        assert_eq!(q, vec![1.0, 50.0, 95.0, 99.0, 100.0]);
    }

    #[test]
    fn nearest_rank_edges() {
        assert_eq!(nearest_rank(&[7.0], 0.0), 7.0);
        assert_eq!(nearest_rank(&[7.0], 0.99), 7.0);
        assert_eq!(nearest_rank(&[7.0], 1.0), 7.0);
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&twenty, 0.95), 19.0);
        assert_eq!(nearest_rank(&twenty, 0.5), 10.0);
        assert_eq!(nearest_rank(&[1.0, 2.0], 0.5), 1.0);
        assert_eq!(nearest_rank(&[1.0, 2.0], 0.51), 2.0);
    }

    #[test]
    fn zero_cap_keeps_sum_and_count_only() {
        let w = filled(0, [1.0, 2.0]);
        assert!(w.quantiles(&[0.5]).is_empty());
        assert_eq!(w.sum(), 3.0);
        assert_eq!(w.count(), 2);
    }
}
