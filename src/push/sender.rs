//! A writer's sender task: wait for samples, send the oldest batch, then commit it (accepted,
//! or rejected for good) or back off and try again; and its log lines, one when the writer
//! starts failing and one when it recovers, one for a run of rejected batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::client::Client;
use super::stats::Stats;
use super::{Backoff, Compressor, Jitter, RetryAction, RetryPolicy, WriterState};

/// A writer that is failing: since when and how often it was retried.
struct Outage {
    since: Instant,
    retries: u64,
}

/// One writer's sender: wait for data, send the oldest batch, then commit it (accepted or
/// rejected for good) or back off and try again. Ends when flushing and the queue is empty.
pub(super) async fn send_loop(
    state: Arc<WriterState>,
    client: Client,
    policy: RetryPolicy,
    batch: usize,
) {
    let mut backoff = Backoff::new(policy.min, policy.max, Jitter::Equal);
    let mut outage: Option<Outage> = None;
    // Batches and samples rejected (4xx) since the last accepted one: the first rejection is
    // logged, the rest only counted until a batch is accepted again.
    let mut rejected: Option<(u64, u64)> = None;
    // The dropped counter at the last answer, to tell how much an outage cost.
    let mut dropped_mark = 0;
    let url = state.url.as_str();
    // Kept between batches: they grow to the largest batch once; only the body is new.
    let mut raw = Vec::new();
    let mut compressor = Compressor::new();
    loop {
        raw.clear();
        let pinned = state.queue.lock().pin_batch(batch, &mut raw);
        if pinned.series == 0 {
            if state.draining.load(Ordering::Acquire) {
                return;
            }
            state.data.notified().await;
            continue;
        }
        let samples = pinned.samples;
        let body = compressor.compress(&raw).to_vec();
        let started = Instant::now();
        let reply = client.send(body).await;
        state.stats.observe(started.elapsed());
        match reply.action {
            RetryAction::Success | RetryAction::Drop => {
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
                backoff.reset();
                if reply.action == RetryAction::Success {
                    Stats::add(&state.stats.sent, samples);
                    state.stats.mark_success();
                    if let Some((batches, samples)) = rejected.take() {
                        tracing::info!(
                            url = %url,
                            batches,
                            samples,
                            "remote write accepted again after rejected batches"
                        );
                    }
                } else {
                    Stats::add(&state.stats.failed, samples);
                    match &mut rejected {
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
                            rejected = Some((1, samples as u64));
                        }
                    }
                }
                let dropped_now = state.stats.dropped();
                let dropped = dropped_now - std::mem::replace(&mut dropped_mark, dropped_now);
                if let Some(o) = outage.take() {
                    tracing::info!(
                        url = %url,
                        retries = o.retries,
                        samples_waited = waited,
                        samples_dropped = dropped,
                        "remote write recovered after {:.1?}",
                        o.since.elapsed()
                    );
                }
            }
            RetryAction::Retry { after } => {
                state.queue.lock().unpin();
                state.stats.retries.fetch_add(1, Ordering::Relaxed);
                match &mut outage {
                    Some(o) => o.retries += 1,
                    None => {
                        tracing::warn!(
                            url = %url,
                            "remote write failing, will retry: {}",
                            reply.detail
                        );
                        outage = Some(Outage {
                            since: started,
                            retries: 1,
                        });
                    }
                }
                let delay = backoff.delay_for(after);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = state.drain.notified() => {}
                }
            }
        }
    }
}
