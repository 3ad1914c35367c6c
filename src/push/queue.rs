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

use super::wire::{Encoded, Entry};

/// A FIFO of encoded series bounded by a sample count.
#[derive(Debug)]
pub(crate) struct Queue {
    items: VecDeque<Entry>,
    /// Samples in `items`.
    samples: usize,
    capacity: usize,
    /// Leading series of `items` that belong to the request in flight.
    pinned: usize,
    pinned_samples: usize,
}

/// What [`Queue::pin_batch`] took: no series when the queue was empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pinned {
    pub(crate) series: usize,
    pub(crate) samples: usize,
}

// === impl Queue ===

impl Queue {
    /// A queue for at most `capacity` samples (at least 1).
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            samples: 0,
            capacity: capacity.max(1),
            pinned: 0,
            pinned_samples: 0,
        }
    }

    /// Appends a snapshot (its series are shared, not copied); returns how many samples were
    /// dropped to make room (the oldest unpinned ones, which may include the start of this
    /// very snapshot if it alone is larger than the room left).
    pub(crate) fn push(&mut self, snapshot: &Encoded) -> usize {
        for e in snapshot.entries() {
            self.samples += e.samples;
            self.items.push_back(e.clone());
        }
        // The oldest unpinned series that must go, found first and then removed in one go.
        let mut over = self.samples.saturating_sub(self.capacity);
        let mut series = 0;
        let mut dropped = 0;
        for e in self.items.iter().skip(self.pinned) {
            if over == 0 {
                break;
            }
            over = over.saturating_sub(e.samples);
            dropped += e.samples;
            series += 1;
        }
        self.items.drain(self.pinned..self.pinned + series);
        self.samples -= dropped;
        dropped
    }

    /// Pins the oldest series, at most `max_samples` samples in all (but always at least one
    /// series when not empty), and appends them to `body`: the protobuf `WriteRequest` of
    /// the batch. Pins nothing when empty. The previous batch must have been committed or
    /// unpinned.
    pub(crate) fn pin_batch(&mut self, max_samples: usize, body: &mut Vec<u8>) -> Pinned {
        debug_assert_eq!(self.pinned, 0, "a batch is already in flight");
        let mut pinned = Pinned {
            series: 0,
            samples: 0,
        };
        for e in &self.items {
            if pinned.series > 0 && pinned.samples + e.samples > max_samples {
                break;
            }
            pinned.series += 1;
            pinned.samples += e.samples;
            body.extend_from_slice(&e.bytes);
        }
        self.pinned = pinned.series;
        self.pinned_samples = pinned.samples;
        pinned
    }

    /// Removes the pinned batch (it was accepted, or rejected for good).
    pub(crate) fn commit(&mut self) {
        self.items.drain(..self.pinned);
        self.samples -= self.pinned_samples;
        self.unpin();
    }

    /// Releases the pinned batch: it stays at the front, to be retried (or dropped when the
    /// queue overflows before the next try).
    pub(crate) fn unpin(&mut self) {
        self.pinned = 0;
        self.pinned_samples = 0;
    }

    /// Samples queued, the pinned batch included.
    pub(crate) fn samples(&self) -> usize {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::push::proto::{Label, Sample, TimeSeries, WriteRequest};

    /// A snapshot of `n` one-sample series stamped `ts`, values 0..n.
    fn series(ts: i64, n: usize) -> Vec<TimeSeries> {
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

    fn snapshot(ts: i64, n: usize) -> Encoded {
        Encoded::from_series(&series(ts, n))
    }

    /// Pins a batch and decodes its body back into series.
    fn pin(q: &mut Queue, max_samples: usize) -> Vec<TimeSeries> {
        let mut body = Vec::new();
        let pinned = q.pin_batch(max_samples, &mut body);
        let batch = WriteRequest::decode(&*body).unwrap().timeseries;
        assert_eq!(pinned.series, batch.len());
        let samples: usize = batch.iter().map(TimeSeries::sample_count).sum();
        assert_eq!(pinned.samples, samples);
        batch
    }

    fn stamps(batch: &[TimeSeries]) -> Vec<i64> {
        batch.iter().map(|t| t.samples[0].timestamp).collect()
    }

    #[test]
    fn batches_come_out_oldest_first_and_bounded() {
        let mut q = Queue::new(100);
        q.push(&snapshot(1, 3));
        q.push(&snapshot(2, 3));
        let batch = pin(&mut q, 4);
        assert_eq!(stamps(&batch), [1, 1, 1, 2]);
        q.commit();
        assert_eq!(q.samples(), 2);
        assert_eq!(stamps(&pin(&mut q, 4)), [2, 2]);
        q.commit();
        assert_eq!(q.samples(), 0);
        assert!(pin(&mut q, 4).is_empty());
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_them() {
        let mut q = Queue::new(5);
        assert_eq!(q.push(&snapshot(1, 3)), 0);
        assert_eq!(q.push(&snapshot(2, 3)), 1);
        assert_eq!(q.samples(), 5);
        assert_eq!(q.push(&snapshot(3, 3)), 3);
        assert_eq!(stamps(&pin(&mut q, 10)), [2, 2, 3, 3, 3]);
    }

    #[test]
    fn a_snapshot_larger_than_the_capacity_keeps_its_newest_samples() {
        let mut q = Queue::new(2);
        assert_eq!(q.push(&snapshot(1, 5)), 3);
        let values: Vec<f64> = pin(&mut q, 10).iter().map(|t| t.samples[0].value).collect();
        assert_eq!(values, [3.0, 4.0]);
    }

    #[test]
    fn a_pinned_batch_is_never_dropped_while_in_flight() {
        let mut q = Queue::new(4);
        q.push(&snapshot(1, 2));
        q.push(&snapshot(2, 2));
        assert_eq!(stamps(&pin(&mut q, 2)), [1, 1]);
        // Room is made from the oldest unpinned samples.
        assert_eq!(q.push(&snapshot(3, 2)), 2);
        assert_eq!(q.samples(), 4);
        q.commit();
        assert_eq!(stamps(&pin(&mut q, 10)), [3, 3]);
    }

    #[test]
    fn an_unpinned_batch_is_retried_then_dropped_first_on_overflow() {
        let mut q = Queue::new(4);
        q.push(&snapshot(1, 2));
        pin(&mut q, 2);
        q.unpin();
        q.push(&snapshot(2, 2));
        assert_eq!(stamps(&pin(&mut q, 2)), [1, 1], "same batch again");
        q.unpin();
        assert_eq!(q.push(&snapshot(3, 2)), 2);
        assert_eq!(stamps(&pin(&mut q, 10)), [2, 2, 3, 3]);
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut q = Queue::new(7);
        let mut dropped = 0;
        for ts in 0..50 {
            dropped += q.push(&snapshot(ts, 3));
            assert!(q.samples() <= 7);
            if ts % 5 == 0 {
                pin(&mut q, 2);
                q.commit();
            }
        }
        assert_eq!(q.samples() + dropped + 10 * 2, 150);
    }

    #[test]
    fn the_first_series_is_taken_even_when_larger_than_a_batch() {
        let mut q = Queue::new(10);
        let mut big = series(1, 1);
        big[0].samples.push(Sample {
            value: 1.0,
            timestamp: 2,
        });
        q.push(&Encoded::from_series(&big));
        assert_eq!(pin(&mut q, 1).len(), 1);
    }
}
