//! Per-(client, model) counters for client attribution: who uses the backend, in families of
//! their own (`ollama_client_*`) so that the client label never multiplies the per-model
//! histograms.
//!
//! Hot path: one read lock and two `get(&str)` (client, then model) with no allocation, then
//! relaxed atomic adds; the write lock is taken only the first time a (client, model) pair is
//! seen. The lock is held for those adds only, never across a request.
//!
//! Cardinality: at most `max_clients` client labels besides [`UNKNOWN_CLIENT`] (requests that
//! named none) and [`OTHER_CLIENT`] (new clients past the cap, logged once), each with at most
//! the store's model labels: the series are bounded by (`max_clients` + 2) × (model labels) × 4.
//!
//! What counts, for one record, under the same `model` label as the per-model families:
//!
//! | family | counted when |
//! |---|---|
//! | `ollama_client_requests_total` | always (as `ollama_requests_total`) |
//! | `ollama_client_prompt_tokens_total`, `ollama_client_generated_tokens_total` | success and not load-only (as `ollama_prompt_tokens_total`, `ollama_tokens_generated_total`) |
//! | `ollama_client_request_duration_seconds_total` | not load-only, failures included (as `ollama_request_duration_seconds`) |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::RwLock;

use super::cap::LabelCap;
use crate::snapshot::{Family, Kind, Labels};
use crate::vocab::{Record, OTHER_CLIENT, UNKNOWN_CLIENT};

/// client label → model label → counters.
type Map = HashMap<Box<str>, HashMap<Box<str>, Counters>>;

/// The client families of one store.
#[derive(Debug)]
pub(super) struct ClientStats {
    /// Cap on distinct client labels ([`UNKNOWN_CLIENT`] and [`OTHER_CLIENT`] not included).
    cap: LabelCap,
    clients: RwLock<Map>,
}

/// The counters of one (client, model) pair.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    duration_ns: AtomicU64,
}

/// One pair's figures, copied out: requests, prompt tokens, generated tokens, duration (ns).
type Row = (Box<str>, Box<str>, [u64; 4]);

// === impl ClientStats ===

impl ClientStats {
    pub(crate) fn new(max_clients: usize) -> Self {
        ClientStats {
            cap: LabelCap::new(max_clients, "max_clients", "clients"),
            clients: RwLock::new(HashMap::new()),
        }
    }

    /// Accounts `r` under its client (or [`UNKNOWN_CLIENT`], or [`OTHER_CLIENT`] past the cap)
    /// and `model`, the label the per-model families counted it under.
    pub(crate) fn record(&self, model: &str, r: &Record<'_>) {
        let wanted = r.client.unwrap_or(UNKNOWN_CLIENT);
        {
            let clients = self.clients.read();
            let models = match clients.get(wanted) {
                Some(models) => Some(models),
                None if self.over_cap(&clients, wanted) => clients.get(OTHER_CLIENT),
                None => None,
            };
            if let Some(counters) = models.and_then(|m| m.get(model)) {
                counters.add(r);
                return;
            }
        }
        let mut clients = self.clients.write();
        let label = if clients.contains_key(wanted) || !self.over_cap(&clients, wanted) {
            wanted
        } else {
            OTHER_CLIENT
        };
        clients
            .entry(Box::from(label))
            .or_default()
            .entry(Box::from(model))
            .or_default()
            .add(r);
    }

    /// Whether `wanted`, a client without a label yet, finds the cap full (and so counts as
    /// [`OTHER_CLIENT`]); the first time, says so in the log.
    fn over_cap(&self, clients: &Map, wanted: &str) -> bool {
        if wanted == UNKNOWN_CLIENT || wanted == OTHER_CLIENT {
            return false;
        }
        let own = [UNKNOWN_CLIENT, OTHER_CLIENT]
            .iter()
            .filter(|l| clients.contains_key(**l))
            .count();
        self.cap.is_full(clients.len() - own)
    }

    /// Distinct client labels, [`UNKNOWN_CLIENT`] and [`OTHER_CLIENT`] included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.clients.read().len()
    }

    /// The four client families, series sorted by client, then model.
    pub(crate) fn families(&self, out: &mut Vec<Family>) {
        let mut rows: Vec<Row> = {
            let clients = self.clients.read();
            clients
                .iter()
                .flat_map(|(c, models)| models.iter().map(|(m, n)| (c.clone(), m.clone(), n.get())))
                .collect()
        };
        rows.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let family = |name, help, value: fn(&[u64; 4]) -> f64| {
            let mut f = Family::new(name, help, Kind::Counter);
            for (client, model, n) in &rows {
                f.push("", labels(client, model), value(n));
            }
            f
        };
        out.push(family(
            "ollama_client_requests_total",
            "Metered requests by client and model: every request, failures included. client is \
             the value of the first configured header present, else the body's user, else a \
             hash of the API key; unknown when the request named none, other past max_clients.",
            |n| n[0] as f64,
        ));
        out.push(family(
            "ollama_client_prompt_tokens_total",
            "Prompt tokens evaluated (prompt_eval_count, prompt_tokens, input_tokens) by \
             successful requests, by client and model.",
            |n| n[1] as f64,
        ));
        out.push(family(
            "ollama_client_generated_tokens_total",
            "Tokens generated (eval_count, completion_tokens, output_tokens) by successful \
             requests, by client and model.",
            |n| n[2] as f64,
        ));
        out.push(family(
            "ollama_client_request_duration_seconds_total",
            "Request durations measured by the proxy from request arrival to last byte, summed, \
             seconds, by client and model: the time each client held the backend; successful \
             and failed requests, load-only requests excluded.",
            |n| n[3] as f64 / 1e9,
        ));
    }
}

/// `[("client", c), ("model", m)]`
fn labels(client: &str, model: &str) -> Labels {
    vec![
        ("client".to_owned(), client.to_owned()),
        ("model".to_owned(), model.to_owned()),
    ]
}

// === impl Counters ===

impl Counters {
    fn add(&self, r: &Record<'_>) {
        self.requests.fetch_add(1, Relaxed);
        if r.load_only {
            return;
        }
        let ns = u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX);
        self.duration_ns.fetch_add(ns, Relaxed);
        if r.outcome.is_success() {
            let u = &r.usage;
            self.prompt_tokens
                .fetch_add(u.prompt_tokens.unwrap_or(0), Relaxed);
            self.generated_tokens
                .fetch_add(u.completion_tokens.unwrap_or(0), Relaxed);
        }
    }

    fn get(&self) -> [u64; 4] {
        [
            self.requests.load(Relaxed),
            self.prompt_tokens.load(Relaxed),
            self.generated_tokens.load(Relaxed),
            self.duration_ns.load(Relaxed),
        ]
    }
}

#[cfg(test)]
mod tests;
