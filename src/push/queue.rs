//! One writer's bounded sample queue: snapshots wait here, oldest first, until they are sent.
//!
//! Capacity is counted in samples and includes the batch being sent, so the queue never holds
//! more than `capacity` samples. When a snapshot does not fit, the oldest samples are dropped
//! and counted, except the ones *pinned* by a request that is on the wire right now: those are
//! removed only by [`Queue::commit`] (accepted or rejected for good) or released by
//! [`Queue::unpin`] (to be retried). Between two tries nothing is pinned, so a batch that keeps
//! failing is the first to go when the queue overflows. A committed sample has left the queue:
//! nothing is ever sent twice after an answer.

use std::collections::VecDeque;

use super::proto::TimeSeries;

/// A FIFO of series bounded by a sample count.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<TimeSeries>,
    /// Samples in `items`.
    samples: usize,
    capacity: usize,
    /// Leading series of `items` that belong to the request in flight.
    pinned: usize,
    pinned_samples: usize,
}

// === impl Queue ===

impl Queue {
    /// A queue for at most `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            samples: 0,
            capacity: capacity.max(1),
            pinned: 0,
            pinned_samples: 0,
        }
    }

    /// Appends a snapshot; returns how many samples were dropped to make room (the oldest
    /// unpinned ones, which may include the start of this very snapshot if it alone is larger
    /// than the room left).
    pub fn push(&mut self, snapshot: Vec<TimeSeries>) -> usize {
        for ts in snapshot {
            self.samples += ts.sample_count();
            self.items.push_back(ts);
        }
        let mut dropped = 0;
        while self.samples > self.capacity && self.items.len() > self.pinned {
            let Some(ts) = self.items.remove(self.pinned) else {
                break;
            };
            self.samples -= ts.sample_count();
            dropped += ts.sample_count();
        }
        dropped
    }

    /// Pins and returns a copy of the oldest series, at most `max_samples` samples in all
    /// (but always at least one series when not empty). Returns an empty batch when empty.
    /// The previous batch must have been committed or unpinned.
    pub fn pin_batch(&mut self, max_samples: usize) -> Vec<TimeSeries> {
        debug_assert_eq!(self.pinned, 0, "a batch is already in flight");
        let mut batch = Vec::new();
        let mut samples = 0;
        for ts in &self.items {
            let n = ts.sample_count();
            if !batch.is_empty() && samples + n > max_samples {
                break;
            }
            samples += n;
            batch.push(ts.clone());
        }
        self.pinned = batch.len();
        self.pinned_samples = samples;
        batch
    }

    /// Removes the pinned batch (it was accepted, or rejected for good).
    pub fn commit(&mut self) {
        self.items.drain(..self.pinned);
        self.samples -= self.pinned_samples;
        self.unpin();
    }

    /// Releases the pinned batch: it stays at the front, to be retried (or dropped when the
    /// queue overflows before the next try).
    pub fn unpin(&mut self) {
        self.pinned = 0;
        self.pinned_samples = 0;
    }

    /// Samples queued, the pinned batch included.
    pub fn samples(&self) -> usize {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::proto::{Label, Sample};

    /// A snapshot of `n` one-sample series stamped `ts`, values 0..n.
    fn snapshot(ts: i64, n: usize) -> Vec<TimeSeries> {
        (0..n)
            .map(|i| TimeSeries {
                labels: vec![Label::new("__name__", format!("m{i}"))],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: ts,
                }],
            })
            .collect()
    }

    fn stamps(batch: &[TimeSeries]) -> Vec<i64> {
        batch.iter().map(|t| t.samples[0].timestamp).collect()
    }

    #[test]
    fn batches_come_out_oldest_first_and_bounded() {
        let mut q = Queue::new(100);
        q.push(snapshot(1, 3));
        q.push(snapshot(2, 3));
        let batch = q.pin_batch(4);
        assert_eq!(stamps(&batch), [1, 1, 1, 2]);
        q.commit();
        assert_eq!(q.samples(), 2);
        assert_eq!(stamps(&q.pin_batch(4)), [2, 2]);
        q.commit();
        assert_eq!(q.samples(), 0);
        assert!(q.pin_batch(4).is_empty());
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_them() {
        let mut q = Queue::new(5);
        assert_eq!(q.push(snapshot(1, 3)), 0);
        assert_eq!(q.push(snapshot(2, 3)), 1);
        assert_eq!(q.samples(), 5);
        assert_eq!(q.push(snapshot(3, 3)), 3);
        assert_eq!(stamps(&q.pin_batch(10)), [2, 2, 3, 3, 3]);
    }

    #[test]
    fn a_snapshot_larger_than_the_capacity_keeps_its_newest_samples() {
        let mut q = Queue::new(2);
        assert_eq!(q.push(snapshot(1, 5)), 3);
        let values: Vec<f64> = q.pin_batch(10).iter().map(|t| t.samples[0].value).collect();
        assert_eq!(values, [3.0, 4.0]);
    }

    #[test]
    fn a_pinned_batch_is_never_dropped_while_in_flight() {
        let mut q = Queue::new(4);
        q.push(snapshot(1, 2));
        q.push(snapshot(2, 2));
        assert_eq!(stamps(&q.pin_batch(2)), [1, 1]);
        // Room is made from the oldest unpinned samples.
        assert_eq!(q.push(snapshot(3, 2)), 2);
        assert_eq!(q.samples(), 4);
        q.commit();
        assert_eq!(stamps(&q.pin_batch(10)), [3, 3]);
    }

    #[test]
    fn an_unpinned_batch_is_retried_then_dropped_first_on_overflow() {
        let mut q = Queue::new(4);
        q.push(snapshot(1, 2));
        q.pin_batch(2);
        q.unpin();
        q.push(snapshot(2, 2));
        assert_eq!(stamps(&q.pin_batch(2)), [1, 1], "same batch again");
        q.unpin();
        assert_eq!(q.push(snapshot(3, 2)), 2);
        assert_eq!(stamps(&q.pin_batch(10)), [2, 2, 3, 3]);
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut q = Queue::new(7);
        let mut dropped = 0;
        for ts in 0..50 {
            dropped += q.push(snapshot(ts, 3));
            assert!(q.samples() <= 7);
            if ts % 5 == 0 {
                q.pin_batch(2);
                q.commit();
            }
        }
        assert_eq!(q.samples() + dropped + 10 * 2, 150);
    }

    #[test]
    fn the_first_series_is_taken_even_when_larger_than_a_batch() {
        let mut q = Queue::new(10);
        let mut big = snapshot(1, 1);
        big[0].samples.push(Sample {
            value: 1.0,
            timestamp: 2,
        });
        q.push(big);
        assert_eq!(q.pin_batch(1).len(), 1);
    }
}
