//! The shape of `/status.json` (and of what the page shows): plain serializable structs, filled
//! in by `status.rs`. README's "Status page" section documents the same keys.

use serde::Serialize;

/// `/status.json`, and what the page shows. Every key is always present; `null` where a
/// figure is unknown (no ring sample yet, no observation, a family the agent lacks).
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// The agent's version.
    pub(crate) version: &'static str,
    /// The instance's proxy address.
    pub(crate) listen: String,
    /// Seconds the `recent` figures cover: up to 300, less while the ring is younger.
    pub(crate) recent_seconds: Option<f64>,
    pub(crate) refresh_seconds: u64,
    pub(crate) backend: Backend,
    /// Requests being answered now, every model.
    pub(crate) in_flight: u64,
    /// Busiest first (requests since start), then by name.
    pub(crate) models: Vec<ModelStatus>,
    /// `null` unless the store has `ollama_queue_wait_seconds`.
    pub(crate) queue_wait: Option<Vec<QueueWait>>,
    /// `null` unless the store has `ollama_client_requests_total`.
    pub(crate) clients: Option<Clients>,
    pub(crate) writers: Vec<Writer>,
    pub(crate) history: History,
}

#[derive(Debug, Serialize)]
pub(crate) struct Backend {
    /// `ollama_url`, credentials removed.
    pub(crate) url: String,
    pub(crate) up: bool,
    pub(crate) version: Option<String>,
    /// Why the last check failed.
    pub(crate) error: Option<String>,
    pub(crate) loaded: Vec<Loaded>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Loaded {
    pub(crate) model: String,
    pub(crate) size_bytes: u64,
    pub(crate) vram_bytes: u64,
    /// `vram_bytes / size_bytes` (1: all in GPU memory).
    pub(crate) vram_share: Option<f64>,
    pub(crate) context_length: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ModelStatus {
    pub(crate) model: String,
    pub(crate) in_flight: u64,
    /// Since the agent started.
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) tokens: u64,
    /// Over the last `recent_seconds`; `null` before the first ring sample.
    pub(crate) recent: Option<Recent>,
    pub(crate) history: ModelHistory,
}

#[derive(Debug, Serialize)]
pub(crate) struct Recent {
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) tokens: u64,
    pub(crate) requests_per_second: f64,
    /// `failed / requests`; `null` without requests.
    pub(crate) error_ratio: Option<f64>,
    /// Generated tokens per second.
    pub(crate) tokens_per_second: f64,
    /// From the `ollama_request_duration_seconds` buckets; `null` without requests.
    pub(crate) p95_seconds: Option<f64>,
}

/// One point per interval between two ring samples, oldest first; `null` where the ring
/// left the model out.
#[derive(Debug, Serialize)]
pub(crate) struct ModelHistory {
    pub(crate) requests_per_second: Vec<Option<f64>>,
    pub(crate) errors_per_second: Vec<Option<f64>>,
    pub(crate) tokens_per_second: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct QueueWait {
    pub(crate) model: String,
    /// Waits observed since start.
    pub(crate) waits: u64,
    /// Waits observed over the last `recent_seconds`.
    pub(crate) recent_waits: Option<u64>,
    pub(crate) p95_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Clients {
    /// Distinct `client` values.
    pub(crate) total: usize,
    /// The [`TOP_CLIENTS`] busiest, by requests since start.
    pub(crate) top: Vec<Client>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Client {
    pub(crate) client: String,
    pub(crate) requests: u64,
    /// `null` unless the store has `ollama_client_generated_tokens_total`.
    pub(crate) tokens: Option<u64>,
    /// Models it used.
    pub(crate) models: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct Writer {
    pub(crate) url: String,
    pub(crate) seconds_since_last_success: f64,
    pub(crate) queue_samples: u64,
    pub(crate) sent_samples: u64,
    pub(crate) failed_samples: u64,
    pub(crate) dropped_samples: u64,
    pub(crate) retries: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct History {
    pub(crate) interval_seconds: u64,
    /// Samples the ring holds at most.
    pub(crate) capacity: usize,
    pub(crate) samples: usize,
    /// Memory the samples take.
    pub(crate) bytes: usize,
    /// Requests in flight at each sample, oldest first.
    pub(crate) in_flight: Vec<u64>,
}
