//! The shape of `/status.json` (and of what the page shows): plain serializable structs, filled
//! in by `status.rs`. README's "Status page" section documents the same keys.

use serde::Serialize;

/// `/status.json`, and what the page shows. Every key is always present; `null` where a
/// figure is unknown (no ring sample yet, no observation, a family the agent lacks).
#[derive(Debug, Serialize)]
pub struct Status {
    /// The agent's version.
    pub version: &'static str,
    /// The instance's proxy address.
    pub listen: String,
    /// Seconds the `recent` figures cover: up to 300, less while the ring is younger.
    pub recent_seconds: Option<f64>,
    pub refresh_seconds: u64,
    pub backend: Backend,
    /// Requests being answered now, every model.
    pub in_flight: u64,
    /// Busiest first (requests since start), then by name.
    pub models: Vec<ModelStatus>,
    /// `null` unless the store has `ollama_queue_wait_seconds`.
    pub queue_wait: Option<Vec<QueueWait>>,
    /// `null` unless the store has `ollama_client_requests_total`.
    pub clients: Option<Clients>,
    pub writers: Vec<Writer>,
    pub history: History,
}

#[derive(Debug, Serialize)]
pub struct Backend {
    /// `ollama_url`, credentials removed.
    pub url: String,
    pub up: bool,
    pub version: Option<String>,
    /// Why the last check failed.
    pub error: Option<String>,
    pub loaded: Vec<Loaded>,
}

#[derive(Debug, Serialize)]
pub struct Loaded {
    pub model: String,
    pub size_bytes: u64,
    pub vram_bytes: u64,
    /// `vram_bytes / size_bytes` (1: all in GPU memory).
    pub vram_share: Option<f64>,
    pub context_length: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ModelStatus {
    pub model: String,
    pub in_flight: u64,
    /// Since the agent started.
    pub requests: u64,
    pub failed: u64,
    pub tokens: u64,
    /// Over the last `recent_seconds`; `null` before the first ring sample.
    pub recent: Option<Recent>,
    pub history: ModelHistory,
}

#[derive(Debug, Serialize)]
pub struct Recent {
    pub requests: u64,
    pub failed: u64,
    pub tokens: u64,
    pub requests_per_second: f64,
    /// `failed / requests`; `null` without requests.
    pub error_ratio: Option<f64>,
    /// Generated tokens per second.
    pub tokens_per_second: f64,
    /// From the `ollama_request_duration_seconds` buckets; `null` without requests.
    pub p95_seconds: Option<f64>,
}

/// One point per interval between two ring samples, oldest first; `null` where the ring
/// left the model out.
#[derive(Debug, Serialize)]
pub struct ModelHistory {
    pub requests_per_second: Vec<Option<f64>>,
    pub errors_per_second: Vec<Option<f64>>,
    pub tokens_per_second: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct QueueWait {
    pub model: String,
    /// Waits observed since start.
    pub waits: u64,
    /// Waits observed over the last `recent_seconds`.
    pub recent_waits: Option<u64>,
    pub p95_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Clients {
    /// Distinct `client` values.
    pub total: usize,
    /// The [`TOP_CLIENTS`] busiest, by requests since start.
    pub top: Vec<Client>,
}

#[derive(Debug, Serialize)]
pub struct Client {
    pub client: String,
    pub requests: u64,
    /// `null` unless the store has `ollama_client_generated_tokens_total`.
    pub tokens: Option<u64>,
    /// Models it used.
    pub models: usize,
}

#[derive(Debug, Serialize)]
pub struct Writer {
    pub url: String,
    pub seconds_since_last_success: f64,
    pub queue_samples: u64,
    pub sent_samples: u64,
    pub failed_samples: u64,
    pub dropped_samples: u64,
    pub retries: u64,
}

#[derive(Debug, Serialize)]
pub struct History {
    pub interval_seconds: u64,
    /// Samples the ring holds at most.
    pub capacity: usize,
    pub samples: usize,
    /// Memory the samples take.
    pub bytes: usize,
    /// Requests in flight at each sample, oldest first.
    pub in_flight: Vec<u64>,
}
