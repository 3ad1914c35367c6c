//! Renders the store's figures into [`Family`]s: names, help texts, kinds and label sets.
//!
//! Label order in every series: `model`, `endpoint`, then `le` / `quantile` / `outcome` /
//! `reason`. Per-endpoint series exist only for (model, endpoint) pairs that were recorded,
//! and a pair's histogram only once it has an observation; time to first token, time per
//! output token, tokens per second and queue wait are never shown for the embedding
//! endpoints, which generate nothing.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use parking_lot::Mutex;

use super::histogram::{le_label, HistogramSnapshot};
use super::model_stats::{EndpointStats, ModelStats, FINISH_REASONS};
use super::window::{nearest_rank, Window};
use super::{LoadedModel, DEFAULT_WINDOW};
use crate::snapshot::{Family, Kind, Labels};
use crate::vocab::Endpoint;

/// Number of families in a snapshot.
pub(crate) const COUNT: usize = 24;

/// A model's name and stats, as copied out of the map.
type Models = [(Box<str>, Arc<ModelStats>)];

/// Quantile label values and their ranks for `ollama_response_duration_seconds`.
const RESPONSE_QUANTILES: [(&str, f64); 5] = [
    ("0", 0.0),
    ("0.5", 0.5),
    ("0.95", 0.95),
    ("0.99", 0.99),
    ("1", 1.0),
];
/// Quantile label values and their ranks for `ollama_model_load_duration_seconds`.
const LOAD_QUANTILES: [(&str, f64); 2] = [("0.5", 0.5), ("0.95", 0.95)];

// Summary help texts; the window size is named when it is the default ([`DEFAULT_WINDOW`],
// checked by a test in `store/tests.rs`).
pub(super) const RESPONSE_HELP_DEFAULT: &str =
    "Response duration measured by the proxy from request \
    arrival to last byte, seconds; quantiles over the last 1000 successful requests, \
    sum and count over all since start.";
const RESPONSE_HELP: &str = "Response duration measured by the proxy from request arrival \
    to last byte, seconds; quantiles over a window of the most recent successful requests, \
    sum and count over all since start.";
pub(super) const LOAD_HELP_DEFAULT: &str =
    "Model load duration reported by Ollama (load_duration), \
    seconds; quantiles over the last 1000 successful requests that reported one, \
    sum and count over all since start.";
const LOAD_HELP: &str = "Model load duration reported by Ollama (load_duration), seconds; \
    quantiles over a window of the most recent successful requests that reported one, \
    sum and count over all since start.";

/// A per-(model, endpoint) histogram family: name, help, whether embedding endpoints are
/// left out, and which histogram of the pair it shows.
struct HistogramSpec {
    name: &'static str,
    help: &'static str,
    generating_only: bool,
    pick: fn(&EndpointStats) -> HistogramSnapshot,
}

const HISTOGRAMS: [HistogramSpec; 7] = [
    HistogramSpec {
        name: "ollama_request_duration_seconds",
        help: "Request duration measured by the proxy from request arrival to last byte, \
            seconds, by model and endpoint; successful and failed requests (errors \
            included), load-only requests excluded.",
        generating_only: false,
        pick: |e| e.request_duration(),
    },
    HistogramSpec {
        name: "ollama_time_to_first_token_seconds",
        help: "Time from request arrival to the first streamed chunk carrying content, \
            thinking or tool calls, seconds, by model and endpoint; successful streamed \
            requests only.",
        generating_only: true,
        pick: |e| e.ttft.snapshot(),
    },
    HistogramSpec {
        name: "ollama_time_per_output_token_seconds",
        help: "Time per output token after the first, (request duration - time to first \
            token) / (output tokens - 1), seconds, by model and endpoint; successful streamed \
            requests with at least 2 output tokens.",
        generating_only: true,
        pick: |e| e.tpot.snapshot(),
    },
    HistogramSpec {
        name: "ollama_prompt_eval_duration_seconds",
        help: "Prompt evaluation duration reported by Ollama (prompt_eval_duration), \
            seconds, by model and endpoint; successful requests that reported one.",
        generating_only: false,
        pick: |e| e.prompt_eval.snapshot(),
    },
    HistogramSpec {
        name: "ollama_load_duration_seconds",
        help: "Model load duration reported by Ollama (load_duration), seconds, by model \
            and endpoint; successful requests that reported one, load-only requests included.",
        generating_only: false,
        pick: |e| e.load.snapshot(),
    },
    HistogramSpec {
        name: "ollama_generation_tokens_per_second",
        help: "Generation speed reported by Ollama, output tokens / generation time \
            (eval_count / eval_duration), tokens per second, by model and endpoint; \
            successful requests with at least 1 output token.",
        generating_only: true,
        pick: |e| e.tokens_per_second.snapshot(),
    },
    HistogramSpec {
        name: "ollama_queue_wait_seconds",
        help: "Time a request spent inside Ollama waiting for a parallel slot \
            (OLLAMA_NUM_PARALLEL), seconds, by model and endpoint: total_duration - \
            load_duration - prompt_eval_duration - eval_duration, clamped at 0, which is the \
            slot wait plus prompt templating; successful requests that reported all four.",
        generating_only: true,
        pick: |e| e.queue_wait.snapshot(),
    },
];

/// `ollama_up`.
pub(crate) fn up(up: bool) -> Family {
    let mut f = Family::new(
        "ollama_up",
        "1 when the Ollama backend answered the last health check, else 0.",
        Kind::Gauge,
    );
    f.push("", Vec::new(), if up { 1.0 } else { 0.0 });
    f
}

/// The original plugin's seven per-model families, unchanged: only models recorded at least
/// once, as before (a model known only from in-flight guards, e.g. `other` while the only
/// requests it stands for are first requests of new names still in flight, gets no series
/// here).
pub(crate) fn original(models: &Models, window: usize, out: &mut Vec<Family>) {
    let models: Vec<_> = models
        .iter()
        .filter(|(_, s)| s.requests.load(Relaxed) > 0)
        .collect();
    let counter = |name, help, get: fn(&ModelStats) -> u64| {
        let mut f = Family::new(name, help, Kind::Counter);
        for (m, s) in &models {
            f.push("", model_labels(m), get(s) as f64);
        }
        f
    };
    out.push(counter(
        "ollama_requests_total",
        "Proxied inference requests, by model.",
        |s| s.requests.load(Relaxed),
    ));
    out.push(counter(
        "ollama_requests_success",
        "Proxied inference requests that completed successfully, by model.",
        |s| s.success.load(Relaxed),
    ));
    out.push(counter(
        "ollama_requests_failed",
        "Proxied inference requests that failed, by model.",
        |s| s.failed.load(Relaxed),
    ));
    out.push(counter(
        "ollama_tokens_generated_total",
        "Tokens generated (eval_count) by successful requests, by model.",
        |s| s.tokens_generated.load(Relaxed),
    ));
    out.push(counter(
        "ollama_prompt_tokens_total",
        "Prompt tokens evaluated (prompt_eval_count) by successful requests, by model.",
        |s| s.prompt_tokens.load(Relaxed),
    ));

    let default = window == DEFAULT_WINDOW;
    let mut response = Family::new(
        "ollama_response_duration_seconds",
        if default {
            RESPONSE_HELP_DEFAULT
        } else {
            RESPONSE_HELP
        },
        Kind::Summary,
    );
    let mut load = Family::new(
        "ollama_model_load_duration_seconds",
        if default {
            LOAD_HELP_DEFAULT
        } else {
            LOAD_HELP
        },
        Kind::Summary,
    );
    let mut buf = Vec::with_capacity(window);
    for (m, s) in &models {
        push_summary(&mut response, m, &s.response, &RESPONSE_QUANTILES, &mut buf);
        push_summary(&mut load, m, &s.load, &LOAD_QUANTILES, &mut buf);
    }
    out.push(response);
    out.push(load);
}

/// The per-endpoint histograms and three per-endpoint counters. A (model, endpoint) histogram
/// has series from its first observation on: a model used only without streaming has no
/// time-to-first-token series, an embedding model no queue-wait series.
pub(crate) fn per_endpoint(models: &Models, out: &mut Vec<Family>) {
    let pairs = || {
        models.iter().flat_map(|(m, s)| {
            s.recorded_endpoints()
                .map(move |(e, stats)| (&**m, e, stats))
        })
    };
    for spec in &HISTOGRAMS {
        let mut f = Family::new(spec.name, spec.help, Kind::Histogram);
        for (m, e, stats) in pairs() {
            if spec.generating_only && !e.generates() {
                continue;
            }
            let snapshot = (spec.pick)(stats);
            if snapshot.count > 0 {
                push_histogram(&mut f, &pair_labels(m, e), &snapshot);
            }
        }
        out.push(f);
    }

    let mut requests = Family::new(
        "ollama_endpoint_requests_total",
        "Metered requests by model, endpoint and outcome: the HTTP status code of the \
         answer, or stream_error, client_aborted, backend_unreachable, timeout.",
        Kind::Counter,
    );
    let mut cached = Family::new(
        "ollama_prompt_cached_tokens_total",
        "Prompt tokens served from Ollama's prompt cache (prompt_eval_cached_count, \
         cached_tokens) by successful requests that reported them, by model and endpoint.",
        Kind::Counter,
    );
    let mut reasons = Family::new(
        "ollama_finish_reason_total",
        "Requests by why generation stopped (done_reason, finish_reason, stop_reason): \
         stop, length (truncated), tool_calls, content_filter, load, unload, other; \
         by model and endpoint.",
        Kind::Counter,
    );
    for (m, e, stats) in pairs() {
        for (outcome, n) in stats.outcomes.snapshot() {
            let mut labels = pair_labels(m, e);
            labels.push(("outcome".to_owned(), outcome.label().into_owned()));
            requests.push("", labels, n as f64);
        }
        let n = stats.cached_prompt_tokens.load(Relaxed);
        cached.push("", pair_labels(m, e), n as f64);
        for (reason, count) in FINISH_REASONS.iter().zip(&stats.finish_reasons) {
            let n = count.load(Relaxed);
            if n > 0 {
                let mut labels = pair_labels(m, e);
                labels.push(("reason".to_owned(), reason.as_str().to_owned()));
                reasons.push("", labels, n as f64);
            }
        }
    }
    out.extend([requests, cached, reasons]);
}

/// `ollama_requests_in_flight`, every known model.
pub(crate) fn in_flight(models: &Models) -> Family {
    let mut f = Family::new(
        "ollama_requests_in_flight",
        "Metered requests currently being proxied, by model.",
        Kind::Gauge,
    );
    for (m, s) in models {
        f.push("", model_labels(m), s.in_flight.load(Relaxed) as f64);
    }
    f
}

/// `ollama_backend_info`, one series when a version is known.
pub(crate) fn backend_info(version: Option<&str>) -> Family {
    let mut f = Family::new(
        "ollama_backend_info",
        "Version of the Ollama backend (/api/version) in the version label; value 1. \
         Absent while the version is unknown.",
        Kind::Gauge,
    );
    if let Some(v) = version {
        f.push("", vec![("version".to_owned(), v.to_owned())], 1.0);
    }
    f
}

/// The three loaded-model gauges.
pub(crate) fn loaded(models: &[LoadedModel], out: &mut Vec<Family>) {
    let mut size = Family::new(
        "ollama_loaded_model_size_bytes",
        "Size of each model loaded in Ollama (/api/ps size), bytes.",
        Kind::Gauge,
    );
    let mut vram = Family::new(
        "ollama_loaded_model_vram_bytes",
        "Part of each loaded model held in GPU memory (/api/ps size_vram), bytes.",
        Kind::Gauge,
    );
    let mut ctx = Family::new(
        "ollama_loaded_model_context_length",
        "Context length each model was loaded with (/api/ps context_length), tokens; \
         absent when Ollama does not report it.",
        Kind::Gauge,
    );
    for m in models {
        size.push("", model_labels(&m.name), m.size_bytes as f64);
        vram.push("", model_labels(&m.name), m.vram_bytes as f64);
        if let Some(n) = m.context_length {
            ctx.push("", model_labels(&m.name), n as f64);
        }
    }
    out.extend([size, vram, ctx]);
}

/// `ollama_tap_proxy_overhead_seconds`, no labels (see [`super::Store::observe_overhead`]).
pub(crate) fn overhead(s: &HistogramSnapshot) -> Family {
    let mut f = Family::new(
        "ollama_tap_proxy_overhead_seconds",
        "Time a forwarded request spends in the proxy before it is handed to the upstream \
         HTTP client, seconds: from the start of the proxy handler (request head already \
         parsed) to the upstream call, before connecting. On metered inference endpoints it \
         includes the wait for the start of the request body, read to learn the model.",
        Kind::Histogram,
    );
    push_histogram(&mut f, &Vec::new(), s);
    f
}

/// `[("model", m)]`
fn model_labels(model: &str) -> Labels {
    vec![("model".to_owned(), model.to_owned())]
}

/// `[("model", m), ("endpoint", path)]`
fn pair_labels(model: &str, endpoint: Endpoint) -> Labels {
    vec![
        ("model".to_owned(), model.to_owned()),
        ("endpoint".to_owned(), endpoint.as_str().to_owned()),
    ]
}

/// Appends one histogram: a cumulative `_bucket` per bound, `le="+Inf"` (= count), `_sum`
/// and `_count`, each with `base` labels.
pub(super) fn push_histogram(family: &mut Family, base: &Labels, s: &HistogramSnapshot) {
    let bucket = |le: String| {
        let mut labels = base.clone();
        labels.push(("le".to_owned(), le));
        labels
    };
    for (&bound, &n) in s.bounds.iter().zip(&s.cumulative) {
        family.push("_bucket", bucket(le_label(bound)), n as f64);
    }
    family.push("_bucket", bucket("+Inf".to_owned()), s.count as f64);
    family.push("_sum", base.clone(), s.sum);
    family.push("_count", base.clone(), s.count as f64);
}

/// Appends one model's quantile, `_sum` and `_count` series. The window is copied into `buf`
/// under its lock and sorted after the lock is released. No quantile series when the window is
/// empty (they would be NaN).
fn push_summary(
    family: &mut Family,
    model: &str,
    window: &Mutex<Window>,
    quantiles: &[(&'static str, f64)],
    buf: &mut Vec<f64>,
) {
    buf.clear();
    let (sum, count) = {
        let w = window.lock();
        buf.extend_from_slice(w.values());
        (w.sum(), w.count())
    };
    if !buf.is_empty() {
        buf.sort_unstable_by(f64::total_cmp);
        for &(label, q) in quantiles {
            let labels = vec![
                ("model".to_owned(), model.to_owned()),
                ("quantile".to_owned(), label.to_owned()),
            ];
            family.push("", labels, nearest_rank(buf, q));
        }
    }
    family.push("_sum", model_labels(model), sum);
    family.push("_count", model_labels(model), count as f64);
}
