//! The statistics of one model: the original plugin's counters and windows, the in-flight
//! gauge, and per-endpoint histograms and counters, all updated by [`ModelStats::record`].
//!
//! Memory: a model costs 336 bytes (counters, window headers, a name pointer, 9 empty
//! endpoint slots of 16 bytes), the bytes of its name twice (the map's key, the stats' own
//! copy), plus its two windows' rings (8 bytes per observation, allocated at the first
//! observation: 2 × 8 KB at the default window of 1000). The [`EndpointStats`] of an endpoint
//! (1816 bytes: nine histograms of 16–21 atomics, 16 outcome slots, 7 finish reasons, the
//! failures' duration histograms by outcome, 168 bytes each, made at the first of each) is
//! allocated the first time the model is recorded on that endpoint, which is also what makes
//! its series appear. A model used on 2 endpoints: about 19 KB.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use parking_lot::Mutex;

use super::histogram::{
    Histogram, HistogramSnapshot, DURATION_BUCKETS, MICROS, NANOS, QUEUE_WAIT_BUCKETS,
    TOKENS_PER_SECOND_BUCKETS, TOKEN_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS, UNITS,
};
use super::window::Window;
use crate::vocab::{Endpoint, FinishReason, Outcome, Record};

/// Distinct outcomes a (model, endpoint) pair counts without locking or allocating.
const OUTCOME_SLOTS: usize = 16;

/// Every finish reason, in the order of [`EndpointStats::finish_reasons`].
pub(super) const FINISH_REASONS: [FinishReason; 7] = [
    FinishReason::Stop,
    FinishReason::Length,
    FinishReason::ToolCalls,
    FinishReason::ContentFilter,
    FinishReason::Load,
    FinishReason::Unload,
    FinishReason::Other,
];

/// Counters, windows and per-endpoint stats of one model.
#[derive(Debug)]
pub(super) struct ModelStats {
    /// The `model` label these stats are the map's entry for (a copy of its key), so that a
    /// request's in-flight guard can tell whether a record belongs here without a lookup.
    pub(crate) name: Box<str>,
    pub(crate) requests: AtomicU64,
    pub(crate) success: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) tokens_generated: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
    /// Signed so that a stray extra decrement shows as −1 instead of wrapping.
    pub(crate) in_flight: AtomicI64,
    pub(crate) response: Mutex<Window>,
    pub(crate) load: Mutex<Window>,
    endpoints: [OnceLock<Box<EndpointStats>>; Endpoint::ALL.len()],
}

/// Histograms and counters of one (model, endpoint) pair.
#[derive(Debug)]
pub(super) struct EndpointStats {
    /// Request duration of the successful requests; [`Self::request_duration`] adds the
    /// failures' to it.
    pub(crate) ok_duration: Histogram<17>,
    /// Request duration of the failed requests, by how they failed (OpenTelemetry's
    /// `error.type`); allocated at a pair's first failure of that kind, found under a lock
    /// taken only by failures.
    pub(crate) failed_duration: Mutex<Vec<(Outcome, Box<Histogram<17>>)>>,
    pub(crate) ttft: Histogram<19>,
    pub(crate) tpot: Histogram<14>,
    pub(crate) prompt_eval: Histogram<17>,
    pub(crate) load: Histogram<17>,
    pub(crate) tokens_per_second: Histogram<16>,
    pub(crate) queue_wait: Histogram<15>,
    /// Prompt and output tokens per successful request, for `gen_ai_client_token_usage`;
    /// observed only on a store with the OpenTelemetry names on.
    pub(crate) input_tokens: Histogram<14>,
    pub(crate) output_tokens: Histogram<14>,
    pub(crate) outcomes: OutcomeCounts,
    /// Indexed like [`FINISH_REASONS`].
    pub(crate) finish_reasons: [AtomicU64; FINISH_REASONS.len()],
    pub(crate) cached_prompt_tokens: AtomicU64,
}

/// Requests by [`Outcome`]: a lock-free table of `(key, count)` slots claimed in order by CAS
/// (key 0 = free; slots are never freed, so a key lives in exactly one slot), and a locked
/// spill list for the unlikely 17th distinct outcome on one pair.
#[derive(Debug)]
pub(super) struct OutcomeCounts {
    slots: [(AtomicU32, AtomicU64); OUTCOME_SLOTS],
    spill: Mutex<Vec<(u32, u64)>>,
}

// === impl ModelStats ===

impl ModelStats {
    pub(crate) fn new(name: &str, window: usize) -> Self {
        ModelStats {
            name: Box::from(name),
            requests: AtomicU64::new(0),
            success: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            tokens_generated: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            response: Mutex::new(Window::new(window)),
            load: Mutex::new(Window::new(window)),
            endpoints: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Accounts one finished request (see the crate's `Store::record` for what counts where);
    /// `otel`: the store exports the OpenTelemetry names, which need the token histograms.
    pub(crate) fn record(&self, r: &Record<'_>, otel: bool) {
        let success = r.outcome.is_success();
        let measured = success && !r.load_only;
        let u = &r.usage;

        // the original plugin's figures
        self.requests.fetch_add(1, Relaxed);
        if success {
            self.success.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        if measured {
            let completion = u.completion_tokens.unwrap_or(0);
            self.tokens_generated.fetch_add(completion, Relaxed);
            let prompt = u.prompt_tokens.unwrap_or(0);
            self.prompt_tokens.fetch_add(prompt, Relaxed);
            self.response.lock().observe(r.duration.as_secs_f64());
            if let Some(ns) = u.load_duration_ns {
                self.load.lock().observe(ns as f64 / 1e9);
            }
        }

        // per endpoint
        let ep = self.endpoint(r.endpoint);
        ep.outcomes.add(r.outcome);
        if let Some(reason) = r.finish_reason {
            ep.finish_reasons[finish_index(reason)].fetch_add(1, Relaxed);
        }
        if !r.load_only {
            if success {
                ep.ok_duration.observe_duration(r.duration);
            } else {
                ep.observe_failed(r.outcome, r.duration);
            }
        }
        if success {
            if let Some(ns) = u.load_duration_ns {
                ep.load.observe(ns as f64 / 1e9);
            }
        }
        if !measured {
            return;
        }
        if let Some(ns) = u.prompt_eval_duration_ns {
            ep.prompt_eval.observe(ns as f64 / 1e9);
        }
        if let Some(n) = u.cached_prompt_tokens {
            ep.cached_prompt_tokens.fetch_add(n, Relaxed);
        }
        if let Some(ns) = u.queue_wait_ns() {
            ep.queue_wait.observe(ns as f64 / 1e9);
        }
        let completion = u.completion_tokens.unwrap_or(0);
        if otel {
            if let Some(n) = u.prompt_tokens {
                ep.input_tokens.observe(n as f64);
            }
            if let Some(n) = u.completion_tokens {
                ep.output_tokens.observe(n as f64);
            }
        }
        if let Some(ttft) = r.ttft {
            ep.ttft.observe_duration(ttft);
            if completion >= 2 {
                let rest = r.duration.saturating_sub(ttft).as_secs_f64();
                ep.tpot.observe(rest / (completion - 1) as f64);
            }
        }
        match u.eval_duration_ns {
            Some(ns) if ns > 0 && completion >= 1 => {
                ep.tokens_per_second
                    .observe(completion as f64 / (ns as f64 / 1e9));
            }
            _ => {}
        }
    }

    /// The stats of `endpoint`, allocated on first use.
    pub(crate) fn endpoint(&self, endpoint: Endpoint) -> &EndpointStats {
        self.endpoints[endpoint.index()].get_or_init(|| Box::new(EndpointStats::new()))
    }

    /// The endpoints this model was recorded on, in [`Endpoint::ALL`] order.
    pub(crate) fn recorded_endpoints(&self) -> impl Iterator<Item = (Endpoint, &EndpointStats)> {
        Endpoint::ALL
            .into_iter()
            .filter_map(|e| Some((e, &**self.endpoints[e.index()].get()?)))
    }
}

/// Position of `reason` in [`FINISH_REASONS`].
fn finish_index(reason: FinishReason) -> usize {
    match reason {
        FinishReason::Stop => 0,
        FinishReason::Length => 1,
        FinishReason::ToolCalls => 2,
        FinishReason::ContentFilter => 3,
        FinishReason::Load => 4,
        FinishReason::Unload => 5,
        FinishReason::Other => 6,
    }
}

// === impl EndpointStats ===

impl EndpointStats {
    fn new() -> Self {
        EndpointStats {
            ok_duration: Histogram::new(&DURATION_BUCKETS, NANOS),
            failed_duration: Mutex::new(Vec::new()),
            ttft: Histogram::new(&TTFT_BUCKETS, NANOS),
            tpot: Histogram::new(&TPOT_BUCKETS, NANOS),
            prompt_eval: Histogram::new(&DURATION_BUCKETS, NANOS),
            load: Histogram::new(&DURATION_BUCKETS, NANOS),
            tokens_per_second: Histogram::new(&TOKENS_PER_SECOND_BUCKETS, MICROS),
            queue_wait: Histogram::new(&QUEUE_WAIT_BUCKETS, NANOS),
            input_tokens: Histogram::new(&TOKEN_BUCKETS, UNITS),
            output_tokens: Histogram::new(&TOKEN_BUCKETS, UNITS),
            outcomes: OutcomeCounts::new(),
            finish_reasons: std::array::from_fn(|_| AtomicU64::new(0)),
            cached_prompt_tokens: AtomicU64::new(0),
        }
    }

    /// Every request's duration, successes and failures alike (`ollama_request_duration_seconds`).
    pub(crate) fn request_duration(&self) -> HistogramSnapshot {
        let mut all = self.ok_duration.snapshot();
        for (_, h) in self.failed_duration.lock().iter() {
            all.add(&h.snapshot());
        }
        all
    }

    /// The failed requests' durations by outcome, in outcome order.
    pub(crate) fn failed_durations(&self) -> Vec<(Outcome, HistogramSnapshot)> {
        let mut out: Vec<_> = self
            .failed_duration
            .lock()
            .iter()
            .map(|(o, h)| (*o, h.snapshot()))
            .collect();
        out.sort_by_key(|(o, _)| o.key());
        out
    }

    fn observe_failed(&self, outcome: Outcome, d: std::time::Duration) {
        let mut failed = self.failed_duration.lock();
        match failed.iter().find(|(o, _)| *o == outcome) {
            Some((_, h)) => h.observe_duration(d),
            None => {
                let h = Box::new(Histogram::new(&DURATION_BUCKETS, NANOS));
                h.observe_duration(d);
                failed.push((outcome, h));
            }
        }
    }
}

// === impl OutcomeCounts ===

impl OutcomeCounts {
    fn new() -> Self {
        OutcomeCounts {
            slots: std::array::from_fn(|_| (AtomicU32::new(0), AtomicU64::new(0))),
            spill: Mutex::new(Vec::new()),
        }
    }

    /// Counts one request ending with `outcome`.
    pub(crate) fn add(&self, outcome: Outcome) {
        let key = outcome.key();
        for (k, count) in &self.slots {
            let mut cur = k.load(Relaxed);
            if cur == 0 {
                cur = match k.compare_exchange(0, key, Relaxed, Relaxed) {
                    Ok(_) => key,
                    Err(actual) => actual,
                };
            }
            if cur == key {
                count.fetch_add(1, Relaxed);
                return;
            }
        }
        let mut spill = self.spill.lock();
        match spill.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => spill.push((key, 1)),
        }
    }

    /// Every outcome counted at least once, with its count, in outcome order (HTTP codes
    /// ascending, then stream_error, client_aborted, backend_unreachable, timeout).
    pub(crate) fn snapshot(&self) -> Vec<(Outcome, u64)> {
        let mut out: Vec<(u32, u64)> = self
            .slots
            .iter()
            .map(|(k, n)| (k.load(Relaxed), n.load(Relaxed)))
            .filter(|&(k, n)| k != 0 && n > 0) // a slot is claimed just before its count
            .collect();
        out.extend_from_slice(&self.spill.lock());
        out.sort_unstable();
        out.into_iter()
            .filter_map(|(k, n)| Some((Outcome::from_key(k)?, n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn finish_index_follows_finish_reasons() {
        for (i, r) in FINISH_REASONS.iter().enumerate() {
            assert_eq!(finish_index(*r), i);
        }
    }

    #[test]
    fn outcome_table_spills_past_its_slots_without_losing_counts() {
        let o = OutcomeCounts::new();
        for code in (200..240).rev() {
            for _ in 0..(code - 199) {
                o.add(Outcome::Http(code));
            }
        }
        o.add(Outcome::Timeout);
        o.add(Outcome::Http(239));
        let got = o.snapshot();
        assert_eq!(got.len(), 41);
        assert_eq!(got[0], (Outcome::Http(200), 1));
        assert_eq!(got[39], (Outcome::Http(239), 41));
        assert_eq!(got[40], (Outcome::Timeout, 1));
        assert_eq!(o.spill.lock().len(), 41 - OUTCOME_SLOTS);
    }

    #[test]
    fn outcome_table_is_exact_under_contention() {
        const THREADS: u32 = 8;
        const PER: u32 = 5_000;
        let o = Arc::new(OutcomeCounts::new());
        let outcomes = [
            Outcome::Http(200),
            Outcome::Http(500),
            Outcome::StreamError,
            Outcome::ClientAborted,
            Outcome::BackendUnreachable,
        ];
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let o = Arc::clone(&o);
                thread::spawn(move || {
                    for i in 0..PER {
                        o.add(outcomes[((t + i) % 5) as usize]);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let got = o.snapshot();
        let want: Vec<_> = outcomes
            .iter()
            .map(|&s| (s, u64::from(THREADS * PER / 5)))
            .collect();
        assert_eq!(got, want);
        // each outcome claimed exactly one slot
        let claimed = o.slots.iter().filter(|(k, _)| k.load(Relaxed) != 0).count();
        assert_eq!(claimed, 5);
    }

    #[test]
    fn endpoint_stats_are_allocated_on_first_use_only() {
        let m = ModelStats::new("m", 10);
        assert_eq!(m.recorded_endpoints().count(), 0);
        m.endpoint(Endpoint::OpenAiEmbeddings);
        m.endpoint(Endpoint::Chat);
        let got: Vec<_> = m.recorded_endpoints().map(|(e, _)| e).collect();
        assert_eq!(got, [Endpoint::Chat, Endpoint::OpenAiEmbeddings]);
        let size = std::mem::size_of::<EndpointStats>();
        assert!(size < 2048, "{size}");
    }
}
