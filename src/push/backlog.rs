//! A writer's backlog: the memory queue (`push/queue.rs`) or, with `[writer_opt] queue_dir`,
//! the disk queue (`push/disk.rs`), behind the one interface the sender task uses. After
//! every change it sets the writer's queue gauges and counts its drops by reason, so that
//! `/metrics` reads atomics and never waits for the queue's lock (or its disk).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::disk::{DiskQueue, Losses};
use super::queue::{Pinned, Queue};
use super::stats::{DropReason, Stats};
use super::wire::Encoded;

/// Where a writer's samples wait.
#[derive(Debug)]
pub(crate) struct Backlog {
    store: Store,
    stats: Arc<Stats>,
    /// The URL, for log lines.
    url: String,
    /// The last write to the disk queue failed (logged once, then once when it works again).
    failing: bool,
}

#[derive(Debug)]
enum Store {
    Memory(Queue),
    /// Boxed: snappy's hash table makes it large.
    Disk(Box<DiskQueue>),
}

// === impl Backlog ===

impl Backlog {
    /// A memory queue for at most `capacity` samples.
    pub(crate) fn memory(capacity: usize, stats: Arc<Stats>, url: String) -> Backlog {
        Backlog::new(Store::Memory(Queue::new(capacity)), stats, url)
    }

    /// The disk queue `queue`, as opened (its gauges set at once).
    pub(crate) fn disk(queue: DiskQueue, stats: Arc<Stats>, url: String) -> Backlog {
        Backlog::new(Store::Disk(Box::new(queue)), stats, url)
    }

    fn new(store: Store, stats: Arc<Stats>, url: String) -> Backlog {
        let mut backlog = Backlog {
            store,
            stats,
            url,
            failing: false,
        };
        backlog.settle();
        backlog
    }

    /// Appends a snapshot stamped `ts_ms`; returns the samples dropped to make room. A
    /// snapshot that cannot be written is counted as `write_error` and logged here: once when
    /// writing starts failing, once when it works again.
    pub(crate) fn push(&mut self, snapshot: &Encoded, ts_ms: i64) -> u64 {
        let full = match &mut self.store {
            Store::Memory(q) => {
                let n = q.push(snapshot) as u64;
                self.stats.drop_samples(DropReason::QueueFull, n);
                n
            }
            Store::Disk(q) => {
                let written = q.push(snapshot, ts_ms);
                let dir = q.dir().display();
                match written {
                    Ok(()) if std::mem::replace(&mut self.failing, false) => {
                        tracing::info!(url = %self.url, %dir, "remote write queue: writing again");
                    }
                    Err(e) if !std::mem::replace(&mut self.failing, true) => {
                        tracing::warn!(
                            url = %self.url,
                            %dir,
                            "remote write queue: cannot write a snapshot, its samples are dropped \
                             (counted as reason=\"write_error\") until writing works again: {e}"
                        );
                    }
                    _ => {}
                }
                0
            }
        };
        full + self.settle().disk_full
    }

    /// Pins the oldest samples for a request (see [`Queue::pin_batch`]); a disk queue first
    /// drops what has grown older than its `queue_max_age`.
    pub(crate) fn pin_batch(&mut self, max_samples: usize, body: &mut Vec<u8>) -> Pinned {
        let pinned = match &mut self.store {
            Store::Memory(q) => q.pin_batch(max_samples, body),
            Store::Disk(q) => {
                q.expire(now_ms());
                q.pin_batch(max_samples, body)
            }
        };
        self.settle();
        pinned
    }

    /// The batch in flight left the queue (accepted, or rejected for good).
    pub(crate) fn commit(&mut self) {
        match &mut self.store {
            Store::Memory(q) => q.commit(),
            Store::Disk(q) => q.commit(),
        }
        self.settle();
    }

    /// The batch in flight is to be tried again.
    pub(crate) fn unpin(&mut self) {
        match &mut self.store {
            Store::Memory(q) => q.unpin(),
            Store::Disk(q) => q.unpin(),
        }
    }

    /// Samples waiting, the batch in flight included.
    pub(crate) fn samples(&self) -> usize {
        match &self.store {
            Store::Memory(q) => q.samples(),
            Store::Disk(q) => q.samples(),
        }
    }

    /// Sets the gauges and counts the disk queue's drops; returns them.
    fn settle(&mut self) -> Losses {
        let (losses, bytes) = match &mut self.store {
            Store::Memory(_) => (Losses::default(), 0),
            Store::Disk(q) => (q.take_losses(), q.bytes()),
        };
        self.stats
            .drop_samples(DropReason::DiskFull, losses.disk_full);
        self.stats.drop_samples(DropReason::TooOld, losses.too_old);
        self.stats.drop_samples(DropReason::Corrupt, losses.corrupt);
        self.stats
            .drop_samples(DropReason::WriteError, losses.write_error);
        self.stats.set_queue(self.samples(), bytes);
        losses
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
