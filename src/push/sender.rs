//! A writer's sender task: wait for samples, send the oldest batch, then commit it (accepted,
//! or rejected for good), resend it in halves (413), or back off and try again; and its log
//! lines, one when the writer starts failing or is pushed back and one when it recovers, one
//! for a run of rejected batches, one the first time a batch is too large.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::client::Reply;
use super::queue::Pinned;
use super::stats::Stats;
use super::{Backoff, Compressor, Jitter, RetryAction, RetryPolicy, WriterState};

/// A writer that is failing or pushed back: since when, how often it was retried, and whether
/// it started with back-pressure (429, 499) rather than a failure.
struct Outage {
    since: Instant,
    retries: u64,
    backpressure: bool,
}

/// What one sender keeps between batches besides its buffers.
struct Sender {
    backoff: Backoff,
    outage: Option<Outage>,
    /// Batches and samples rejected (4xx) since the last accepted one: the first rejection is
    /// logged, the rest only counted until a batch is accepted again.
    rejected: Option<(u64, u64)>,
    /// The dropped counter at the last answer, to tell how much an outage cost.
    dropped_mark: u64,
    /// `batch`, or less after a 413 until a batch is accepted.
    limit: usize,
    /// A 413 was logged already (once per writer: the fix is a smaller `batch`).
    split_logged: bool,
}

/// One writer's sender: wait for data, send the oldest batch, then commit it (accepted or
/// rejected for good), send it again in halves (413), or back off and try again. Ends when
/// flushing and the queue is empty.
pub(super) async fn send_loop(state: Arc<WriterState>, policy: RetryPolicy, batch: usize) {
    let mut sender = Sender {
        backoff: Backoff::new(policy.min, policy.max, Jitter::Equal),
        outage: None,
        rejected: None,
        dropped_mark: 0,
        limit: batch,
        split_logged: false,
    };
    // Kept between batches: they grow to the largest batch once; only the body is new.
    let mut raw = Vec::new();
    let mut compressor = Compressor::new();
    loop {
        raw.clear();
        let pinned = state.queue.lock().pin_batch(sender.limit, &mut raw);
        if pinned.series == 0 {
            if state.draining.load(Ordering::Acquire) {
                return;
            }
            state.data.notified().await;
            continue;
        }
        let body = compressor.compress(&raw).to_vec();
        let started = Instant::now();
        // The writer's client now: a reload may have changed its headers, auth or timeouts.
        let client = state.client.lock().clone();
        let reply = client.send(body).await;
        state.stats.observe(started.elapsed());
        match reply.action {
            RetryAction::Split if pinned.series > 1 => sender.split(&state, pinned, &reply),
            RetryAction::Retry {
                after,
                backpressure,
            } => {
                sender.retry(&state, &reply, started, backpressure);
                let delay = sender.backoff.delay_for(after);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = state.drain.notified() => {}
                }
            }
            RetryAction::Success => {
                sender.answered(&state, pinned.samples, &reply);
                sender.limit = batch;
            }
            // Rejected for good, or one series that is still too large.
            RetryAction::Drop | RetryAction::Split => {
                sender.answered(&state, pinned.samples, &reply);
            }
        }
    }
}

// === impl Sender ===

impl Sender {
    /// The batch got an answer that ends its tries (accepted, or rejected for good): it
    /// leaves the queue, and the logs say what changed.
    fn answered(&mut self, state: &WriterState, samples: usize, reply: &Reply) {
        let (waited, left) = {
            let mut queue = state.queue.lock();
            let waited = queue.samples();
            queue.commit();
            (waited, queue.samples())
        };
        if left == 0 {
            // Caught up: the next overflow is news again.
            state.dropping.store(false, Ordering::Relaxed);
        }
        self.backoff.reset();
        if reply.action == RetryAction::Success {
            Stats::add(&state.stats.sent, samples);
            state.stats.mark_success();
            if let Some((batches, samples)) = self.rejected.take() {
                tracing::info!(
                    url = %state.url,
                    batches,
                    samples,
                    "remote write accepted again after rejected batches"
                );
            }
        } else {
            Stats::add(&state.stats.failed, samples);
            self.count_rejected(&state.url, samples, reply);
        }
        let dropped_now = state.stats.dropped();
        let dropped = dropped_now - std::mem::replace(&mut self.dropped_mark, dropped_now);
        if let Some(o) = self.outage.take() {
            let what = if o.backpressure {
                "remote write no longer pushed back"
            } else {
                "remote write recovered"
            };
            tracing::info!(
                url = %state.url,
                retries = o.retries,
                samples_waited = waited,
                samples_dropped = dropped,
                "{what} after {:.1?}",
                o.since.elapsed()
            );
        }
    }

    fn count_rejected(&mut self, url: &str, samples: usize, reply: &Reply) {
        match &mut self.rejected {
            Some((b, n)) => {
                *b += 1;
                *n += samples as u64;
            }
            None => {
                tracing::warn!(
                    url = %url,
                    samples,
                    "remote write batch rejected, dropped (not retried; further \
                     rejections are counted, not logged): {}",
                    reply.detail
                );
                self.rejected = Some((1, samples as u64));
            }
        }
    }

    /// Not accepted, to be tried again after a backoff: the batch goes back to the queue.
    fn retry(&mut self, state: &WriterState, reply: &Reply, started: Instant, backpressure: bool) {
        state.queue.lock().unpin();
        state.stats.retries.fetch_add(1, Ordering::Relaxed);
        match &mut self.outage {
            Some(o) => o.retries += 1,
            None => {
                let what = if backpressure {
                    "remote write pushed back by the receiver (back-pressure), will retry"
                } else {
                    "remote write failing, will retry"
                };
                tracing::warn!(url = %state.url, "{what}: {}", reply.detail);
                self.outage = Some(Outage {
                    since: started,
                    retries: 1,
                    backpressure,
                });
            }
        }
    }

    /// Too large (413) and more than one series: the batch goes back to the queue and the
    /// next one holds at most half its samples, sent at once (the receiver is not failing).
    fn split(&mut self, state: &WriterState, pinned: Pinned, reply: &Reply) {
        state.queue.lock().unpin();
        state.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.limit = (pinned.samples / 2).max(1);
        if !self.split_logged {
            self.split_logged = true;
            tracing::warn!(
                url = %state.url,
                samples = pinned.samples,
                limit = self.limit,
                "remote write batch too large, resent in halves (a smaller `batch` avoids \
                 this; logged once): {}",
                reply.detail
            );
        }
    }
}
