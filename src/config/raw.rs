//! Serde mirrors of Categraf's TOML files (`config.toml`, `input.ollama/*.toml`), before validation.
//!
//! Every field has a default, so the only errors serde can raise are type mismatches; values are
//! checked in `config/validate.rs`, which can then name the file and field. Keys we accept for Categraf
//! compatibility but do not implement are parsed (so their types are checked) and ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::DurationValue;

/// `conf/config.toml`. Other top-level sections (`[heartbeat]`, `[http]`, ...) are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(expecting = "a TOML document")]
pub struct RawMain {
    /// `[global]`: hostname, labels and the default interval.
    #[serde(default)]
    pub global: RawGlobal,
    /// `[[writers]]`: remote-write endpoints.
    #[serde(default)]
    pub writers: Vec<RawWriter>,
    /// `[writer_opt]`: push queue sizing.
    #[serde(default)]
    pub writer_opt: RawWriterOpt,
    /// `[log]`: log destination and level.
    #[serde(default)]
    pub log: RawLog,
}

/// `[global]` in `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(expecting = "a [global] table")]
pub struct RawGlobal {
    /// Categraf prints the merged config at start; accepted, ignored.
    #[serde(default)]
    pub print_configs: bool,
    /// `agent_hostname` value; "" means the OS hostname; may use `$hostname`, `$ip`, `${ENV}`.
    #[serde(default)]
    pub hostname: String,
    /// Do not add the `agent_hostname` label.
    #[serde(default)]
    pub omit_hostname: bool,
    /// Labels added to every series whose key is not already set.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Timestamp precision ("ms", "s", "m"); accepted, ignored.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Default collection interval; zero or absent means [`super::DEFAULT_INTERVAL`].
    #[serde(default)]
    pub interval: Option<DurationValue>,
    /// Config providers (["local"]); accepted, ignored.
    #[serde(default = "default_providers")]
    pub providers: Vec<String>,
    /// Gather concurrency; accepted, ignored.
    #[serde(default = "default_concurrency")]
    pub concurrency: i64,
}

/// One `[[writers]]` entry in `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(expecting = "a [[writers]] table")]
pub struct RawWriter {
    /// Remote-write URL (required, http or https).
    #[serde(default)]
    pub url: String,
    /// Basic-auth user; sent only when not empty.
    #[serde(default)]
    pub basic_auth_user: String,
    /// Basic-auth password.
    #[serde(default)]
    pub basic_auth_pass: String,
    /// Extra headers as a flat list `["Key", "Value", ...]`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Whole-request timeout in milliseconds, connect to last byte of the answer (0 = no limit).
    #[serde(default = "default_writer_timeout_ms")]
    pub timeout: i64,
    /// Connect timeout in milliseconds (0 = no limit).
    #[serde(default = "default_dial_timeout_ms")]
    pub dial_timeout: i64,
    /// Idle connections kept per host.
    #[serde(default = "default_max_idle_conns_per_host")]
    pub max_idle_conns_per_host: usize,
    /// Categraf: build a TLS config from the keys below (otherwise they are ignored).
    #[serde(default)]
    pub use_tls: bool,
    /// CA certificate: a file path or inline PEM.
    #[serde(default)]
    pub tls_ca: String,
    /// Client certificate; accepted, ignored.
    #[serde(default)]
    pub tls_cert: String,
    /// Client key; accepted, ignored.
    #[serde(default)]
    pub tls_key: String,
    /// Client key password; accepted, ignored.
    #[serde(default)]
    pub tls_key_pwd: String,
    /// Skip server certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// TLS server name override; accepted, ignored.
    #[serde(default)]
    pub tls_server_name: String,
    /// Minimum TLS version; accepted, ignored.
    #[serde(default)]
    pub tls_min_version: String,
    /// Maximum TLS version; accepted, ignored.
    #[serde(default)]
    pub tls_max_version: String,
    /// TLS cipher suites; accepted, ignored.
    #[serde(default)]
    pub tls_cipher_suites: Vec<String>,
}

/// `[writer_opt]` in `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(expecting = "a [writer_opt] table")]
pub struct RawWriterOpt {
    /// Samples per remote-write request; <= 0 means [`super::DEFAULT_BATCH`].
    #[serde(default = "default_batch")]
    pub batch: i64,
    /// Queue capacity in samples; <= 0 means [`super::DEFAULT_CHAN_SIZE`].
    #[serde(default = "default_chan_size")]
    pub chan_size: i64,
    /// Directory of the disk queues, one folder per writer URL; "" keeps the queue in memory.
    #[serde(default)]
    pub queue_dir: String,
    /// A disk queue's bound, per writer, in MiB; <= 0 means [`super::DEFAULT_QUEUE_MAX_MB`].
    #[serde(default = "default_queue_max_mb")]
    pub queue_max_mb: i64,
    /// Queued samples older than this are dropped instead of sent; absent or zero: no limit.
    #[serde(default)]
    pub queue_max_age: Option<DurationValue>,
}

/// `[log]` in `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(expecting = "a [log] table")]
pub struct RawLog {
    /// "stdout", "stderr" (both: the console, which is stderr) or a file path to append to.
    #[serde(default = "default_log_file_name")]
    pub file_name: String,
    /// Rotation size in MB; accepted, ignored.
    #[serde(default)]
    pub max_size: i64,
    /// Rotation age in days; accepted, ignored.
    #[serde(default)]
    pub max_age: i64,
    /// Rotated files kept; accepted, ignored.
    #[serde(default)]
    pub max_backups: i64,
    /// Rotation timestamps in local time; accepted, ignored.
    #[serde(default)]
    pub local_time: bool,
    /// Compress rotated files; accepted, ignored.
    #[serde(default)]
    pub compress: bool,
    /// ollama-tap only: tracing filter directive ("info", "ollama_tap=debug").
    #[serde(default = "default_log_level")]
    pub level: String,
}

/// One `input.ollama/*.toml` file: Categraf's PluginConfig keys plus `[[instances]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(expecting = "a TOML document")]
pub struct RawInput {
    /// Plugin interval; used by instances that set none.
    #[serde(default)]
    pub interval: Option<DurationValue>,
    /// Plugin-level labels (only affect a plugin-level gather, which this input has not); ignored.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Categraf metric drop globs; accepted, ignored.
    #[serde(default)]
    pub metrics_drop: Vec<String>,
    /// Categraf metric pass globs; accepted, ignored.
    #[serde(default)]
    pub metrics_pass: Vec<String>,
    /// Categraf metric name prefix; accepted, ignored.
    #[serde(default)]
    pub metrics_name_prefix: String,
    /// Categraf value mappings; accepted, ignored.
    #[serde(default)]
    pub processor_enum: Vec<toml::Table>,
    /// Categraf relabel rules; accepted, ignored.
    #[serde(default)]
    pub relabel_configs: Vec<toml::Table>,
    /// The proxied Ollama servers.
    #[serde(default)]
    pub instances: Vec<RawInstance>,
}

/// One `[[instances]]` entry: one proxy in front of one Ollama server.
#[derive(Debug, Clone, Deserialize)]
#[serde(expecting = "an [[instances]] table")]
pub struct RawInstance {
    /// Upstream Ollama base URL (http or https; a path prefix is kept).
    #[serde(default = "default_ollama_url")]
    pub ollama_url: String,
    /// Go-style listen address of the proxy (":8000" = all IPv4 interfaces).
    #[serde(default = "default_proxy_listen_addr")]
    pub proxy_listen_addr: String,
    /// Upstream timeout; zero or absent means [`super::DEFAULT_TIMEOUT`].
    #[serde(default)]
    pub timeout: Option<DurationValue>,
    /// Push interval; falls back to the plugin, then the global interval.
    #[serde(default)]
    pub interval: Option<DurationValue>,
    /// Instance labels: overwrite series labels; "-" deletes one.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Categraf: gather every N intervals; accepted, ignored.
    #[serde(default)]
    pub interval_times: i64,
    /// Categraf metric drop globs; accepted, ignored.
    #[serde(default)]
    pub metrics_drop: Vec<String>,
    /// Categraf metric pass globs; accepted, ignored.
    #[serde(default)]
    pub metrics_pass: Vec<String>,
    /// Categraf metric name prefix; accepted, ignored.
    #[serde(default)]
    pub metrics_name_prefix: String,
    /// Categraf value mappings; accepted, ignored.
    #[serde(default)]
    pub processor_enum: Vec<toml::Table>,
    /// Categraf relabel rules; accepted, ignored.
    #[serde(default)]
    pub relabel_configs: Vec<toml::Table>,
    /// Cap on distinct `model` label values per instance: past it (and for names answered
    /// 404) requests are counted under `model="other"`.
    #[serde(default = "default_max_models")]
    pub max_models: usize,
    /// Passive mode: no `/api/version` or `/api/ps` check of the agent's own.
    #[serde(default)]
    pub passive: bool,
    /// Add `stream_options.include_usage` to streamed `/v1/chat/completions` requests and
    /// remove the extra usage chunk from the answer.
    #[serde(default)]
    pub include_usage: bool,
    /// Also export the OpenTelemetry GenAI semantic-convention metrics (`gen_ai_*`).
    #[serde(default)]
    pub otel_semconv: bool,
    /// Separate listen address for `/metrics` and `/health`; "" = served on the proxy port.
    #[serde(default)]
    pub metrics_listen_addr: String,
    /// Bearer token required on `/metrics` and `/health`; "" = no token.
    #[serde(default)]
    pub metrics_bearer_token: String,
    /// Basic-auth user required on `/metrics` and `/health`; "" = no basic auth.
    #[serde(default)]
    pub metrics_basic_auth_user: String,
    /// Basic-auth password for `metrics_basic_auth_user`.
    #[serde(default)]
    pub metrics_basic_auth_pass: String,
    /// Request headers naming the client (first present wins); [] = none.
    #[serde(default)]
    pub client_headers: Vec<String>,
    /// Name the client by the top-level `user` of the request body.
    #[serde(default)]
    pub client_from_body: bool,
    /// Name the client by a short hash of its API key (bearer token, `x-api-key`).
    #[serde(default)]
    pub client_from_api_key: bool,
    /// Label every header or body client value by its hash.
    #[serde(default)]
    pub client_hash: bool,
    /// Cap on distinct `client` label values per instance: past it, `client="other"`.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Bound on receiving a request head; zero or absent means
    /// [`super::limits::DEFAULT_CLIENT_HEADER_TIMEOUT`].
    #[serde(default)]
    pub client_header_timeout: Option<DurationValue>,
    /// Bound on an idle kept-alive connection; zero or absent means
    /// [`super::limits::DEFAULT_KEEPALIVE_TIMEOUT`].
    #[serde(default)]
    pub keepalive_timeout: Option<DurationValue>,
    /// Client connections served at once per listener; 0 = no cap.
    #[serde(default)]
    pub max_connections: usize,
}

/// `[global] precision` default.
pub fn default_precision() -> String {
    "ms".to_owned()
}

/// `[global] providers` default.
pub fn default_providers() -> Vec<String> {
    vec!["local".to_owned()]
}

/// `[global] concurrency` default (Categraf: -1 = NumCPU*10).
pub fn default_concurrency() -> i64 {
    -1
}

/// `[[writers]] timeout` default, milliseconds.
pub fn default_writer_timeout_ms() -> i64 {
    5000
}

/// `[[writers]] dial_timeout` default, milliseconds.
pub fn default_dial_timeout_ms() -> i64 {
    2500
}

/// `[[writers]] max_idle_conns_per_host` default.
pub fn default_max_idle_conns_per_host() -> usize {
    100
}

/// `[writer_opt] batch` default: [`super::DEFAULT_BATCH`].
pub fn default_batch() -> i64 {
    super::DEFAULT_BATCH as i64
}

/// `[writer_opt] queue_max_mb` default: [`super::DEFAULT_QUEUE_MAX_MB`].
pub fn default_queue_max_mb() -> i64 {
    super::DEFAULT_QUEUE_MAX_MB as i64
}

/// `[writer_opt] chan_size` default: [`super::DEFAULT_CHAN_SIZE`].
pub fn default_chan_size() -> i64 {
    super::DEFAULT_CHAN_SIZE as i64
}

/// `[log] file_name` default.
pub fn default_log_file_name() -> String {
    "stdout".to_owned()
}

/// `[log] level` default.
pub fn default_log_level() -> String {
    "info".to_owned()
}

/// `[[instances]] ollama_url` default.
pub fn default_ollama_url() -> String {
    "http://localhost:11434".to_owned()
}

/// `[[instances]] proxy_listen_addr` default.
pub fn default_proxy_listen_addr() -> String {
    ":8000".to_owned()
}

/// `[[instances]] max_models` default: [`super::DEFAULT_MAX_MODELS`].
pub fn default_max_models() -> usize {
    super::DEFAULT_MAX_MODELS
}

/// `[[instances]] max_clients` default: [`super::DEFAULT_MAX_CLIENTS`].
pub fn default_max_clients() -> usize {
    super::DEFAULT_MAX_CLIENTS
}

// === impl RawGlobal ===

impl Default for RawGlobal {
    fn default() -> Self {
        RawGlobal {
            print_configs: false,
            hostname: String::new(),
            omit_hostname: false,
            labels: BTreeMap::new(),
            precision: default_precision(),
            interval: None,
            providers: default_providers(),
            concurrency: default_concurrency(),
        }
    }
}

// === impl RawWriterOpt ===

impl Default for RawWriterOpt {
    fn default() -> Self {
        RawWriterOpt {
            batch: default_batch(),
            chan_size: default_chan_size(),
            queue_dir: String::new(),
            queue_max_mb: default_queue_max_mb(),
            queue_max_age: None,
        }
    }
}

// === impl RawLog ===

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            file_name: default_log_file_name(),
            max_size: 0,
            max_age: 0,
            max_backups: 0,
            local_time: false,
            compress: false,
            level: default_log_level(),
        }
    }
}
