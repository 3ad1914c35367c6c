//! The per-instance metric store: the original plugin's per-model counters and summaries, and
//! per-(model, endpoint) histograms and counters, fed by every metered request and rendered
//! into a [`Family`] snapshot (family by family in `store/families.rs`).
//!
//! Hot path: one map lookup per request. [`Store::begin`] takes a read lock on the model map
//! (`get(&str)`, no allocation) to clone the model's `Arc` for the in-flight gauge;
//! [`Store::finish`] records straight into that `Arc` when it is the recorded model's own
//! (no map lock, no hash), with relaxed atomic adds, lock-free histograms, and a short
//! per-window mutex for the two latency rings. Only a model's first request, one past the
//! cap, or one labelled by its answer looks the map up again ([`Store::record`]). The map's
//! write lock is only taken the first time a model is seen, and an endpoint's stats are
//! allocated the first time a model is recorded on it (see `store/model_stats.rs` for the memory
//! per model).
//!
//! What counts where, for one [`Record`]:
//!
//! | figure | counted when |
//! |---|---|
//! | `ollama_requests_total`, `_success`, `_failed`, `ollama_endpoint_requests_total` | always |
//! | `ollama_finish_reason_total` | a finish reason was read |
//! | `ollama_request_duration_seconds` | not load-only: successes **and failures** (e2e latency, errors included) |
//! | `ollama_load_duration_seconds` | success with `load_duration`, load-only too (a load is a load) |
//! | tokens, response/load summaries, prompt eval, cached tokens, TTFT, TPOT, tokens/s | success and not load-only |
//!
//! With client attribution on ([`Store::count_clients`]), each record is also counted per
//! (client, model) under the same model label, in families of their own (`store/clients.rs`).

mod cap;
mod clients;
mod families;
pub mod histogram;
mod model_stats;
mod otel;
pub(crate) mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::config::DEFAULT_MAX_MODELS;
use crate::snapshot::Family;
use crate::vocab::{Outcome, Record, OTHER_MODEL};
use cap::LabelCap;
use clients::ClientStats;
use histogram::{Histogram, NANOS, OVERHEAD_BUCKETS};
use model_stats::ModelStats;

/// Observations kept per model for the summary quantiles: the original plugin's 1000 (every
/// instance's store uses it; tests use smaller windows).
pub(crate) const DEFAULT_WINDOW: usize = 1000;

/// All metrics of one tap instance; shared as `Arc<Store>` by every request.
#[derive(Debug)]
pub struct Store {
    window: usize,
    up: AtomicBool,
    models: RwLock<HashMap<Box<str>, Arc<ModelStats>>>,
    /// Cap on distinct model labels (`other` not included).
    cap: LabelCap,
    overhead: Histogram<13>,
    version: RwLock<Option<Box<str>>>,
    /// Sorted by name, names unique.
    loaded: Mutex<Vec<LoadedModel>>,
    /// Also export the OpenTelemetry GenAI names (`otel_semconv`).
    otel: bool,
    /// Per-(client, model) counters; `None` (nothing counted, nothing exported) unless client
    /// attribution is on.
    clients: Option<ClientStats>,
}

/// A model Ollama has loaded (`/api/ps`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadedModel {
    pub(crate) name: String,
    /// `size`
    pub(crate) size_bytes: u64,
    /// `size_vram`
    pub(crate) vram_bytes: u64,
    /// `context_length`, when Ollama reports it.
    pub(crate) context_length: Option<u64>,
}

/// A request counted in `ollama_requests_in_flight` until this guard drops, from
/// [`Store::begin`] to [`Store::finish`].
///
/// It keeps the stats it counts under, found once at the start: the model's own when the
/// model had a label then, else [`OTHER_MODEL`]'s. Stats are never replaced or removed from
/// the map, so stats whose name is the recorded label are exactly the ones a lookup of that
/// label would find: [`Store::finish`] records into them without looking again.
#[derive(Debug)]
#[must_use = "the request stops counting as in flight when the guard drops"]
pub(crate) struct InFlight {
    stats: Arc<ModelStats>,
}

// === impl Store ===

impl Store {
    /// An empty store whose summaries compute quantiles over the last `window` observations,
    /// with the default model cap ([`DEFAULT_MAX_MODELS`]).
    pub fn new(window: usize) -> Self {
        Self::with_max_models(window, DEFAULT_MAX_MODELS)
    }

    /// An empty store that gives at most `max_models` distinct models a label of their own.
    pub(crate) fn with_max_models(window: usize, max_models: usize) -> Self {
        Store {
            window,
            up: AtomicBool::new(false),
            models: RwLock::new(HashMap::new()),
            cap: LabelCap::new(max_models, "max_models", "model names"),
            overhead: Histogram::new(&OVERHEAD_BUCKETS, NANOS),
            version: RwLock::new(None),
            loaded: Mutex::new(Vec::new()),
            otel: false,
            clients: None,
        }
    }

    /// This store, also exporting the OpenTelemetry GenAI names (`otel_semconv = true`):
    /// from the same records, with no second measurement (see `store/otel.rs`).
    pub(crate) fn with_otel(mut self, otel: bool) -> Self {
        self.otel = otel;
        self
    }

    /// The store, also counting requests per (client, model), with at most `max_clients`
    /// client labels besides `unknown` and `other`.
    pub(crate) fn count_clients(mut self, max_clients: usize) -> Self {
        self.clients = Some(ClientStats::new(max_clients));
        self
    }

    /// Accounts one finished request (see the module docs for what counts where).
    ///
    /// Cardinality guard: a model gets a label of its own the first time it is recorded with
    /// an answer other than 404, while fewer than `max_models` have one; otherwise it is
    /// counted under [`OTHER_MODEL`]. Every request is counted somewhere.
    pub(crate) fn record(&self, r: &Record<'_>) {
        let stats = self.admit(r.model, r.outcome);
        stats.record(r, self.otel);
        self.record_client(&stats.name, r);
    }

    /// A request of `model` starts: in-flight gauge +1 now, −1 when the guard drops (or is
    /// given to [`Store::finish`]). A model that has no label of its own yet (its first
    /// request) is in flight under [`OTHER_MODEL`]. One read lock, one lookup (two for a
    /// model without a label, under the same lock).
    pub(crate) fn begin(&self, model: &str) -> InFlight {
        let found = {
            let models = self.models.read();
            models
                .get(model)
                .or_else(|| models.get(OTHER_MODEL))
                .cloned()
        };
        let stats = found.unwrap_or_else(|| self.stats_for(OTHER_MODEL));
        stats.in_flight.fetch_add(1, Relaxed);
        InFlight { stats }
    }

    /// Accounts a request begun with [`Store::begin`], then ends its in-flight count (the
    /// guard is consumed: −1 exactly once). Same accounting as [`Store::record`]; when the
    /// guard's stats are the recorded model's own (the model had its label at the start and
    /// the record carries that label) they take the record directly, without a lookup.
    pub(crate) fn finish(&self, begun: InFlight, r: &Record<'_>) {
        if begun.counts_as(r.model) {
            begun.stats.record(r, self.otel);
            self.record_client(&begun.stats.name, r);
        } else {
            self.record(r);
        }
        drop(begun);
    }

    /// Counts `r` per client under `model`, the label it was counted under, when client
    /// attribution is on.
    fn record_client(&self, model: &str, r: &Record<'_>) {
        if let Some(clients) = &self.clients {
            clients.record(model, r);
        }
    }

    /// The stats a record of `model` goes to (see [`Store::record`]).
    fn admit(&self, model: &str, outcome: Outcome) -> Arc<ModelStats> {
        if let Some(s) = self.models.read().get(model) {
            return Arc::clone(s);
        }
        if outcome == Outcome::Http(404) {
            return self.stats_for(OTHER_MODEL);
        }
        let mut models = self.models.write();
        if let Some(s) = models.get(model) {
            return Arc::clone(s);
        }
        let named = models.len() - usize::from(models.contains_key(OTHER_MODEL));
        if self.cap.is_full(named) {
            drop(models);
            return self.stats_for(OTHER_MODEL);
        }
        let s = models
            .entry(Box::from(model))
            .or_insert_with(|| Arc::new(ModelStats::new(model, self.window)));
        Arc::clone(s)
    }

    /// Observes `ollama_tap_proxy_overhead_seconds` for one forwarded request (metered or
    /// not): from the first line of `Proxy::forward` (hyper has read the request head; no
    /// body byte read yet) to the moment the rewritten request is handed to the backend pool,
    /// `Upstream::send` (before a connection is checked out or opened, before any byte goes
    /// upstream). On metered endpoints this includes `Peeked::read`, i.e. waiting
    /// for the client's body until the model is found, the body ends, or
    /// the proxy's `PEEK_LIMIT` (to the end or the limit for zstd bodies and the
    /// `include_usage` rewrite): a slow upload shows here. Requests refused before forwarding
    /// (absolute-form, `CONNECT`, 431, a body that broke off during the peek) are not observed.
    pub(crate) fn observe_overhead(&self, d: Duration) {
        self.overhead.observe_duration(d);
    }

    /// ollama_up: 1 when the backend answered the last check
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }

    /// The backend's version for `ollama_backend_info`; `None` (or empty) removes the series.
    pub(crate) fn set_backend_version(&self, version: Option<&str>) {
        let version = version.filter(|v| !v.is_empty()).map(Box::from);
        *self.version.write() = version;
    }

    /// Replaces the loaded models wholesale. Sorted by name; of duplicate names the first wins.
    pub(crate) fn set_loaded_models(&self, mut models: Vec<LoadedModel>) {
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models.dedup_by(|later, first| later.name == first.name);
        *self.loaded.lock() = models;
    }

    /// Every family, in a fixed order, with series sorted by model, then endpoint.
    pub fn snapshot(&self) -> Vec<Family> {
        let mut models: Vec<(Box<str>, Arc<ModelStats>)> = {
            let map = self.models.read();
            map.iter()
                .map(|(m, s)| (m.clone(), Arc::clone(s)))
                .collect()
        };
        models.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let version = self.version.read().clone();
        let loaded = self.loaded.lock().clone();

        let mut out = Vec::with_capacity(families::COUNT + otel::COUNT);
        out.push(families::up(self.up.load(Relaxed)));
        families::original(&models, self.window, &mut out);
        families::per_endpoint(&models, &mut out);
        out.push(families::in_flight(&models));
        out.push(families::backend_info(version.as_deref()));
        families::loaded(&loaded, &mut out);
        out.push(families::overhead(&self.overhead.snapshot()));
        if self.otel {
            otel::families(&models, &mut out);
        }
        if let Some(clients) = &self.clients {
            clients.families(&mut out);
        }
        out
    }

    /// Distinct model labels tracked, `other` included.
    #[cfg(test)]
    pub(crate) fn models(&self) -> usize {
        self.models.read().len()
    }

    /// The stats of `model`, created on first sight.
    fn stats_for(&self, model: &str) -> Arc<ModelStats> {
        if let Some(s) = self.models.read().get(model) {
            return Arc::clone(s);
        }
        let mut models = self.models.write();
        let s = models
            .entry(Box::from(model))
            .or_insert_with(|| Arc::new(ModelStats::new(model, self.window)));
        Arc::clone(s)
    }
}

// === impl InFlight ===

impl InFlight {
    /// Whether the request is in flight under the stats of `label` (the map's entry for it).
    fn counts_as(&self, label: &str) -> bool {
        &*self.stats.name == label
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests;
