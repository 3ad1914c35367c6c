//! Remote-write push: snapshots of the store go to every `[[writers]]` URL as Prometheus
//! remote-write 1.0 requests (<https://prometheus.io/docs/specs/prw/remote_write_spec/>).
//!
//! The pipeline, one file per stage:
//!
//! ```text
//! Vec<Family> ──encode, wire──► Encoded ──enqueue──► queue (one per writer, bounded)
//!                                                      │ sender task: batch ≤ writer_opt.batch
//!                                                      ▼
//!                                   compress ──► client (POST) ──► retry (decide, back off)
//! ```
//!
//! Each writer has its own queue and task, so a slow or dead writer never delays another one,
//! nor the caller: [`Writers::enqueue`] only takes a short lock. While a writer is down, its
//! snapshots wait (oldest first) and are sent when it recovers; when its queue is full the
//! oldest samples are dropped and counted (`push/queue.rs` has the exact rule).

pub mod proto;

mod backlog;
mod client;
mod disk;
mod encode;
mod lifecycle;
mod queue;
/// The disk queue's record format: public for the fuzz target (`fuzz/`), not for use.
#[doc(hidden)]
pub mod record;
#[cfg(test)]
mod reference;
mod retry;
mod sender;
mod stats;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config;
use crate::snapshot::Family;
use backlog::Backlog;
use client::Client;
use stats::Stats;

pub(crate) use client::redact;
pub use encode::encode_families;
pub(crate) use retry::{Backoff, Jitter, RetryAction};
pub(crate) use stats::{
    QUEUE_SAMPLES, RETRIES, SAMPLES_DROPPED, SAMPLES_FAILED, SAMPLES_SENT, SINCE_LAST_SUCCESS,
};
pub use wire::{compress, Compressor, Encoded};

/// Backoff bounds between retries of one batch (exponential, equal jitter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first wait (jittered to between half of it and all of it).
    pub min: Duration,
    /// The cap, also for a receiver's `Retry-After`.
    pub max: Duration,
}

/// The running push: one queue and one sender task per writer.
#[derive(Debug)]
pub struct Writers {
    /// The writers as configured, in order; `states` and `tasks` follow it.
    configs: Vec<config::Writer>,
    states: Vec<Arc<WriterState>>,
    tasks: Vec<JoinHandle<()>>,
    retry: RetryPolicy,
    /// `[writer_opt]` as the writers started with it (a reload keeps it for kept writers).
    opt: config::WriterOpt,
}

/// A cheap, cloneable view of the push's own metrics (for `/metrics`), valid after a flush.
#[derive(Clone, Debug)]
pub struct PushMetrics {
    states: Vec<Arc<WriterState>>,
}

/// Why the push could not start; one line naming the writer's field and URL.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("writers[{index}].url: {url}: {reason}")]
    Url {
        index: usize,
        url: String,
        reason: String,
    },
    #[error("writers[{index}].headers: {url}: header {name:?}: {reason}")]
    Header {
        index: usize,
        url: String,
        name: String,
        reason: String,
    },
    #[error("writers[{index}].tls_ca: {url}: {reason}")]
    TlsCa {
        index: usize,
        url: String,
        reason: String,
    },
    #[error("writers[{index}]: {url}: cannot build the http client: {reason}")]
    Client {
        index: usize,
        url: String,
        reason: String,
    },
    #[error("writer_opt.queue_dir: {path}: {reason} (writers[{index}]: {url})")]
    QueueDir {
        index: usize,
        url: String,
        path: String,
        reason: String,
    },
    #[error("remote write must be started inside a tokio runtime")]
    NoRuntime,
}

/// One writer's queue, counters and wake-ups: what its sender task shares with [`Writers`]
/// (and, through [`PushMetrics`], with `/metrics`).
#[derive(Debug)]
struct WriterState {
    /// The writer URL without userinfo: the `url` label and the log field.
    url: String,
    /// Swapped by a reload that changes the writer's headers, auth, TLS or timeouts.
    client: Mutex<Arc<Client>>,
    queue: Mutex<Backlog>,
    stats: Arc<Stats>,
    /// A snapshot arrived, or the flush began.
    data: Notify,
    /// The flush began: cut the current backoff short, once.
    drain: Notify,
    draining: AtomicBool,
    /// Drops were logged since the queue was last empty (one line per episode).
    dropping: AtomicBool,
}

// === impl RetryPolicy ===

impl Default for RetryPolicy {
    /// 1 s doubling to 60 s.
    fn default() -> Self {
        RetryPolicy {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

// === impl Writers ===

impl Writers {
    /// Spawns one task per writer on the current tokio runtime, with the default backoff.
    pub fn start(
        writers: &[config::Writer],
        opt: &config::WriterOpt,
    ) -> Result<Writers, PushError> {
        Writers::start_with(writers, opt, RetryPolicy::default())
    }

    /// As [`Writers::start`], with the given backoff bounds. Every client is built and every
    /// queue opened before any task starts, so an error starts nothing.
    pub fn start_with(
        writers: &[config::Writer],
        opt: &config::WriterOpt,
        retry: RetryPolicy,
    ) -> Result<Writers, PushError> {
        let mut all = Writers {
            configs: Vec::new(),
            states: Vec::new(),
            tasks: Vec::new(),
            retry,
            opt: opt.clone(),
        };
        all.reconfigure(writers)?;
        Ok(all)
    }

    /// Queues one snapshot, all of it at `ts_ms`, for every writer: encoded once, straight
    /// from the families, and shared by every queue. Never blocks on the network: a short
    /// lock per writer, and a wake-up for its task.
    pub fn enqueue_families(&self, families: &[Family], ts_ms: i64) {
        if !self.is_empty() {
            self.enqueue_encoded(&Encoded::from_families(families, ts_ms), ts_ms);
        }
    }

    /// As [`Writers::enqueue_families`], for series that are already structs (stamped with
    /// the newest sample's timestamp for `queue_max_age`).
    pub fn enqueue(&self, series: Vec<proto::TimeSeries>) {
        if !self.is_empty() {
            let ts_ms = series
                .iter()
                .flat_map(|s| &s.samples)
                .map(|s| s.timestamp)
                .max()
                .unwrap_or(0);
            self.enqueue_encoded(&Encoded::from_series(&series), ts_ms);
        }
    }

    fn enqueue_encoded(&self, series: &Encoded, ts_ms: i64) {
        if !series.is_empty() {
            for s in &self.states {
                s.push(series, ts_ms);
            }
        }
    }

    /// The push's own metrics, one series per writer URL (none when no writer is configured).
    pub fn families(&self) -> Vec<Family> {
        families(&self.states)
    }

    /// A handle that renders [`Writers::families`] from elsewhere (the `/metrics` handler)
    /// while the push loop owns the `Writers`.
    pub fn metrics(&self) -> PushMetrics {
        PushMetrics {
            states: self.states.clone(),
        }
    }

    /// Samples waiting in every writer's queue (the batches in flight included).
    pub fn queued(&self) -> usize {
        self.states.iter().map(|s| s.queue.lock().samples()).sum()
    }

    /// Stops the tasks after trying to deliver what is queued, waiting at most `deadline`:
    /// each writer first cuts its current backoff short and tries at once, then goes on
    /// (with backoff) until its queue is empty. At the deadline the remaining tasks are
    /// aborted, a request in flight included. Returns the samples left unsent.
    pub async fn flush(mut self, deadline: Duration) -> usize {
        for s in &self.states {
            s.draining.store(true, Ordering::Release);
            s.data.notify_one();
            s.drain.notify_one();
        }
        let until = Instant::now() + deadline;
        let mut pending = std::mem::take(&mut self.tasks);
        while let Some(task) = pending.last_mut() {
            if tokio::time::timeout_at(until, task).await.is_err() {
                break;
            }
            pending.pop();
        }
        for task in &pending {
            task.abort();
        }
        for task in pending {
            let _ = task.await; // cancelled: returns at once
        }
        let left = self.queued();
        let on_disk = self.states.iter().any(|s| s.stats.queue_bytes.is_some());
        if left > 0 && on_disk {
            tracing::info!(
                "remote write: {left} samples left unsent at shutdown, kept in the disk queue \
                 for the next start"
            );
        } else if left > 0 {
            tracing::warn!("remote write: {left} samples left unsent at shutdown");
        }
        left
    }

    /// True when no writer is configured (then `enqueue` does nothing).
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

impl Default for Writers {
    /// No writer.
    fn default() -> Self {
        Writers {
            configs: Vec::new(),
            states: Vec::new(),
            tasks: Vec::new(),
            retry: RetryPolicy::default(),
            opt: config::WriterOpt::default(),
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// === impl PushMetrics ===

impl PushMetrics {
    /// Same as [`Writers::families`].
    pub fn families(&self) -> Vec<Family> {
        families(&self.states)
    }
}

fn families(states: &[Arc<WriterState>]) -> Vec<Family> {
    let views: Vec<stats::View<'_>> = states
        .iter()
        .map(|s| stats::View {
            url: &s.url,
            stats: &s.stats,
        })
        .collect();
    stats::families(&views)
}

// === impl WriterState ===

impl WriterState {
    fn push(&self, series: &Encoded, ts_ms: i64) {
        let dropped = self.queue.lock().push(series, ts_ms);
        if dropped > 0 && !self.dropping.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                url = %self.url,
                "remote write queue full: dropping the oldest samples until the writer catches up"
            );
        }
        self.data.notify_one();
    }
}
