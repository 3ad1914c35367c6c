//! The live status page of one instance: `GET /status` (one self-contained HTML page, its
//! tables rendered here so that `curl` and `w3m` show the numbers, refreshed by its own script
//! from `/status.json` every 5 s) and `GET /status.json` (the same figures, shape in README).
//!
//! Everything is computed from snapshots ([`Family`]s, read by name: a family added to the
//! store shows up without plumbing) and from the [`Ring`] of recent samples that
//! [`sample_every`] fills on the control runtime: rates, error ratios and P95s over the last
//! [`RECENT`] are differences between the current snapshot and a ring sample.

pub(crate) mod html;
pub(crate) mod ring;
mod shape;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::probe::Checked;
use crate::push;
use crate::server::stopped;
use crate::snapshot::Family;
use crate::store::Store;
pub(crate) use ring::Ring;
use ring::{label, quantile, Delta, Sample};
pub(crate) use shape::*;

/// The span "recent" figures cover (or less, while the ring is younger).
pub(crate) const RECENT: Duration = Duration::from_secs(300);
/// Clients listed, the busiest first.
pub(crate) const TOP_CLIENTS: usize = 10;
/// How often the page's script asks for `/status.json`, in seconds (the page says it).
pub(crate) const REFRESH_SECONDS: u64 = 5;

/// Added by the per-client work; read only when present.
pub(crate) const CLIENT_REQUESTS: &str = "ollama_client_requests_total";
pub(crate) const CLIENT_TOKENS: &str = "ollama_client_generated_tokens_total";

const UP: &str = "ollama_up";
const BACKEND_INFO: &str = "ollama_backend_info";
const LOADED_SIZE: &str = "ollama_loaded_model_size_bytes";
const LOADED_VRAM: &str = "ollama_loaded_model_vram_bytes";
const LOADED_CONTEXT: &str = "ollama_loaded_model_context_length";

/// What the status is computed from.
pub(crate) struct Inputs<'a> {
    /// The store's snapshot (unlabelled: the agent's own labels only).
    pub(crate) families: &'a [Family],
    /// The push's own families (label `url`, credentials already removed).
    pub(crate) writers: &'a [Family],
    pub(crate) listen: String,
    pub(crate) backend_url: &'a str,
    pub(crate) backend: &'a Checked,
    pub(crate) ring: &'a Ring,
    pub(crate) now: Instant,
}

// === impl Status ===

impl Status {
    pub(crate) fn compute(i: &Inputs<'_>) -> Status {
        let family = |name: &str| i.families.iter().find(|f| f.name == name);
        let now = Sample::of(i.families, i.now, usize::MAX);
        i.ring.with(|samples| {
            let base = ring::base(samples, i.now, RECENT);
            let recent_seconds = base
                .map(|b| i.now.saturating_duration_since(b.at).as_secs_f64())
                .filter(|s| *s > 0.0);
            let in_flight = by_model(family(ring::IN_FLIGHT));
            Status {
                version: crate::VERSION,
                listen: i.listen.clone(),
                recent_seconds: recent_seconds.map(round),
                refresh_seconds: REFRESH_SECONDS,
                backend: Backend::of(i),
                in_flight: now.in_flight,
                models: models(&now, base, samples, &in_flight),
                queue_wait: family(ring::QUEUE_WAIT).map(|_| queue_wait(&now, base)),
                clients: family(CLIENT_REQUESTS).map(|f| Clients::of(f, family(CLIENT_TOKENS))),
                writers: writers(i.writers),
                history: History::of(samples),
            }
        })
    }
}

/// Every model with requests, or in flight before its first one ends, the busiest first.
/// `base`: the ring sample the recent figures are counted from.
fn models(
    now: &Sample,
    base: Option<&Sample>,
    samples: &VecDeque<Sample>,
    in_flight: &BTreeMap<&str, u64>,
) -> Vec<ModelStatus> {
    let mut names: Vec<&str> = now.models.iter().map(|m| &*m.name).collect();
    names.extend(
        in_flight
            .iter()
            .filter(|(m, n)| **n > 0 && now.model(m).is_none())
            .map(|(m, _)| *m),
    );
    let mut models: Vec<ModelStatus> = names
        .into_iter()
        .map(|name| {
            let total = now.model(name);
            ModelStatus {
                model: name.to_owned(),
                in_flight: in_flight.get(name).copied().unwrap_or(0),
                requests: total.map_or(0, |m| m.requests),
                failed: total.map_or(0, |m| m.failed),
                tokens: total.map_or(0, |m| m.tokens),
                recent: base
                    .and_then(|b| now.delta(b, name))
                    .map(|d| Recent::of(&d, &now.duration_bounds)),
                history: ModelHistory::of(samples, name),
            }
        })
        .collect();
    models.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.model.cmp(&b.model))
    });
    models
}

/// The models that waited for a parallel slot, with their recent waits and P95.
fn queue_wait(now: &Sample, base: Option<&Sample>) -> Vec<QueueWait> {
    now.models
        .iter()
        .filter(|m| m.queue_wait.last().is_some_and(|n| *n > 0))
        .map(|m| {
            let d = base.and_then(|b| now.delta(b, &m.name));
            QueueWait {
                model: m.name.to_string(),
                waits: m.queue_wait.last().copied().unwrap_or(0),
                recent_waits: d
                    .as_ref()
                    .map(|d| d.queue_wait.last().copied().unwrap_or(0)),
                p95_seconds: d.and_then(|d| quantile(0.95, &now.queue_bounds, &d.queue_wait)),
            }
        })
        .collect()
}

// === impl ModelHistory ===

impl ModelHistory {
    /// The rates of `model` between each two samples of the ring, oldest first.
    fn of(samples: &VecDeque<Sample>, model: &str) -> ModelHistory {
        let history: Vec<Option<Delta>> = samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| b.delta(a, model))
            .collect();
        let rate = |n: fn(&Delta) -> u64| {
            history
                .iter()
                .map(|d| d.as_ref().map(|d| round(d.per_second(n(d)))))
                .collect()
        };
        ModelHistory {
            requests_per_second: rate(|d| d.requests),
            errors_per_second: rate(|d| d.failed),
            tokens_per_second: rate(|d| d.tokens),
        }
    }
}

// === impl History ===

impl History {
    fn of(samples: &VecDeque<Sample>) -> History {
        History {
            interval_seconds: ring::EVERY.as_secs(),
            capacity: ring::SAMPLES,
            samples: samples.len(),
            bytes: samples.iter().map(Sample::bytes).sum(),
            in_flight: samples.iter().map(|s| s.in_flight).collect(),
        }
    }
}

// === impl Recent ===

impl Recent {
    fn of(d: &Delta, bounds: &[f64]) -> Recent {
        Recent {
            requests: d.requests,
            failed: d.failed,
            tokens: d.tokens,
            requests_per_second: round(d.per_second(d.requests)),
            error_ratio: (d.requests > 0).then(|| round(d.failed as f64 / d.requests as f64)),
            tokens_per_second: round(d.per_second(d.tokens)),
            p95_seconds: quantile(0.95, bounds, &d.duration).map(round),
        }
    }
}

// === impl Backend ===

impl Backend {
    fn of(i: &Inputs<'_>) -> Backend {
        let family = |name: &str| i.families.iter().find(|f| f.name == name);
        let size = by_model(family(LOADED_SIZE));
        let vram = by_model(family(LOADED_VRAM));
        let context = by_model(family(LOADED_CONTEXT));
        let loaded = size
            .iter()
            .map(|(&model, &size_bytes)| {
                let vram_bytes = vram.get(model).copied().unwrap_or(0);
                Loaded {
                    model: model.to_owned(),
                    size_bytes,
                    vram_bytes,
                    vram_share: (size_bytes > 0)
                        .then(|| round(vram_bytes as f64 / size_bytes as f64)),
                    context_length: context.get(model).copied(),
                }
            })
            .collect();
        let series = |name: &str| family(name).and_then(|f| f.series.first());
        Backend {
            url: push::redact(i.backend_url),
            up: series(UP).is_some_and(|s| s.value == 1.0),
            version: series(BACKEND_INFO)
                .and_then(|s| label(s, "version"))
                .map(str::to_owned),
            error: i.backend.error.clone(),
            loaded,
        }
    }
}

// === impl Clients ===

impl Clients {
    fn of(requests: &Family, tokens: Option<&Family>) -> Clients {
        let mut by_client: HashMap<&str, Client> = HashMap::new();
        for s in &requests.series {
            let Some(client) = label(s, "client") else {
                continue;
            };
            let c = by_client.entry(client).or_insert_with(|| Client {
                client: client.to_owned(),
                requests: 0,
                tokens: tokens.map(|_| 0),
                models: 0,
            });
            c.requests += s.value as u64;
            c.models += usize::from(s.value > 0.0);
        }
        for s in tokens.map_or(&[][..], |f| &f.series) {
            let c = label(s, "client").and_then(|client| by_client.get_mut(client));
            if let Some(t) = c.and_then(|c| c.tokens.as_mut()) {
                *t += s.value as u64;
            }
        }
        let total = by_client.len();
        let mut top: Vec<Client> = by_client.into_values().collect();
        top.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.client.cmp(&b.client))
        });
        top.truncate(TOP_CLIENTS);
        Clients { total, top }
    }
}

/// Each writer's state, from the push's families, by `url`.
fn writers(families: &[Family]) -> Vec<Writer> {
    let mut by_url: BTreeMap<&str, Writer> = BTreeMap::new();
    for f in families {
        for s in f.series.iter().filter(|s| s.suffix.is_empty()) {
            let Some(url) = label(s, "url") else { continue };
            let w = by_url.entry(url).or_insert_with(|| Writer {
                url: url.to_owned(),
                seconds_since_last_success: 0.0,
                queue_samples: 0,
                sent_samples: 0,
                failed_samples: 0,
                dropped_samples: 0,
                retries: 0,
            });
            let n = s.value as u64;
            match f.name {
                push::SINCE_LAST_SUCCESS => w.seconds_since_last_success = round(s.value),
                push::QUEUE_SAMPLES => w.queue_samples = n,
                push::SAMPLES_SENT => w.sent_samples = n,
                push::SAMPLES_FAILED => w.failed_samples = n,
                push::SAMPLES_DROPPED => w.dropped_samples += n,
                push::RETRIES => w.retries = n,
                _ => {}
            }
        }
    }
    by_url.into_values().collect()
}

/// A per-model family's values by `model` (summed over other labels), sorted by model.
fn by_model(family: Option<&Family>) -> BTreeMap<&str, u64> {
    let mut out = BTreeMap::new();
    for s in family.map_or(&[][..], |f| &f.series) {
        if let Some(m) = label(s, "model") {
            *out.entry(m).or_insert(0) += s.value as u64;
        }
    }
    out
}

/// Four decimals: enough for a rate or a ratio, and a short JSON number.
fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// `/status`: the page, figures rendered in, no caching, nothing but itself allowed to load.
pub(crate) fn html_response(status: &Status) -> Response {
    let page = html::page(status);
    with_headers(page, "text/html; charset=utf-8")
}

/// `/status.json`.
pub(crate) fn json_response(status: &Status) -> Response {
    let body = serde_json::to_string(status).unwrap_or_default();
    with_headers(body, "application/json")
}

fn with_headers(body: String, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page loads nothing but itself and /status.json: no CDN, font or image to fetch.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    res
}

/// The sampling task of one instance: a sample of the store every [`ring::EVERY`] (the first
/// at once) until the stop flag is set.
pub(crate) async fn sample_every(
    ring: Arc<Ring>,
    store: Arc<Store>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(ring::EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => ring.sample(&store.snapshot(), Instant::now()),
            _ = stopped(&mut stop) => return,
        }
    }
}

#[cfg(test)]
mod tests;
