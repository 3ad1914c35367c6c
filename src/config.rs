//! Validated configuration: loads Categraf's `config.toml` and `input.ollama/*.toml`, checks every value, and reports one-line errors naming the file and the field.

mod check;
mod clients;
mod decode;
pub mod duration;
mod limits;
pub mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Uri;

pub use check::io_reason;
pub use clients::{Clients, DEFAULT_MAX_CLIENTS};
pub use limits::{Limits, DEFAULT_CLIENT_HEADER_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT};
use raw::{RawInput, RawMain};

/// Interval used when none is configured (Categraf's `GetInterval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Upstream timeout used when an instance sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `[[instances]] max_models` when absent (also the cap of `store::Store::new`).
pub const DEFAULT_MAX_MODELS: usize = 100;
/// `[writer_opt] batch` when absent or <= 0.
pub const DEFAULT_BATCH: usize = 1000;
/// `[writer_opt] chan_size` when absent or <= 0.
pub const DEFAULT_CHAN_SIZE: usize = 1_000_000;
/// `[writer_opt] queue_max_mb` when absent or <= 0: 1 GiB per writer.
pub const DEFAULT_QUEUE_MAX_MB: u64 = 1024;
/// The main file inside the config directory.
pub const MAIN_FILE: &str = "config.toml";
/// The input folder inside the config directory.
pub const INPUT_DIR: &str = "input.ollama";

/// Command-line values that win over the files.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--interval`: replaces the global, plugin and every instance interval.
    pub interval: Option<Duration>,
}

/// A loaded configuration plus warnings (unknown keys, ...) for the caller to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config directory it was loaded from.
    pub dir: PathBuf,
    pub global: Global,
    pub writers: Vec<Writer>,
    pub writer_opt: WriterOpt,
    pub log: Log,
    /// All instances from all `input.ollama/*.toml` files, in file-name order.
    pub instances: Vec<Instance>,
}

/// `[global]`.
#[derive(Debug, Clone)]
pub struct Global {
    /// As written (not expanded); see `labels::resolve_hostname`.
    pub hostname: String,
    pub omit_hostname: bool,
    /// Never zero (zero/absent means 15s).
    pub interval: Duration,
    /// As written (not expanded); see `labels::expand_all`.
    pub labels: BTreeMap<String, String>,
}

/// One `[[writers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// Validated absolute http(s) URL, trimmed.
    pub url: String,
    pub basic_auth_user: String,
    pub basic_auth_pass: String,
    /// Header pairs in file order; a `Host` pair should set the request host.
    pub headers: Vec<(String, String)>,
    /// Whole-request timeout of one push (reqwest's: from connecting to the answer's last
    /// byte; Categraf bounds only the wait for the answer's head); `Duration::ZERO` = no limit.
    pub timeout: Duration,
    /// Connect timeout; `Duration::ZERO` means no limit.
    pub dial_timeout: Duration,
    pub max_idle_conns_per_host: usize,
    /// Categraf applies `tls_ca` / `insecure_skip_verify` only when this is true.
    pub use_tls: bool,
    pub insecure_skip_verify: bool,
    /// Extra CA certificates (added to the bundled webpki/Mozilla roots; the OS store is not
    /// read): a file path, or inline PEM when it contains "-----BEGIN"; "" = none.
    pub tls_ca: String,
}

/// `[writer_opt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOpt {
    pub batch: usize,
    /// The memory queue's capacity, in samples (when there is no `queue_dir`).
    pub chan_size: usize,
    /// Where each writer keeps its queue on disk; `None`: in memory.
    pub queue_dir: Option<PathBuf>,
    /// A disk queue's bound, per writer, in bytes.
    pub queue_max_bytes: u64,
    /// Queued samples older than this are dropped, not sent; `Duration::ZERO`: no limit.
    pub queue_max_age: Duration,
}

impl Writer {
    /// A `[[writers]]` entry with only its `url` set: every other key at Categraf's default,
    /// as a config file that names only the URL gets it.
    pub fn new(url: &str) -> Writer {
        let ms = |n: i64| Duration::from_millis(n.unsigned_abs());
        Writer {
            url: url.to_owned(),
            basic_auth_user: String::new(),
            basic_auth_pass: String::new(),
            headers: Vec::new(),
            timeout: ms(raw::default_writer_timeout_ms()),
            dial_timeout: ms(raw::default_dial_timeout_ms()),
            max_idle_conns_per_host: raw::default_max_idle_conns_per_host(),
            use_tls: false,
            insecure_skip_verify: false,
            tls_ca: String::new(),
        }
    }
}

impl Default for WriterOpt {
    /// Categraf's sizes and a memory queue, as an empty `[writer_opt]` gives.
    fn default() -> Self {
        WriterOpt {
            batch: DEFAULT_BATCH,
            chan_size: DEFAULT_CHAN_SIZE,
            queue_dir: None,
            queue_max_bytes: DEFAULT_QUEUE_MAX_MB << 20,
            queue_max_age: Duration::ZERO,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct Log {
    /// "stdout" (also for ""), "stderr": the console, which is stderr (see `run::init_logs`);
    /// anything else: a file path logs are appended to.
    pub file_name: String,
    /// A tracing filter directive, checked to parse.
    pub level: String,
}

/// One `[[instances]]` entry: a proxy in front of one Ollama server.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Position among all instances (0-based, across files).
    pub index: usize,
    /// The file that defined it, and its position there (for messages).
    pub file: PathBuf,
    pub file_index: usize,
    /// Scheme http|https, authority present; path kept as written ("/" when none).
    pub ollama_url: Uri,
    pub proxy_listen_addr: SocketAddr,
    /// `proxy_listen_addr` as written, for messages.
    pub listen_text: String,
    /// Bounds connecting upstream, the wait for a non-inference answer (restarted by upload
    /// progress), every gap inside an answer, and the agent's own checks as a whole.
    pub timeout: Duration,
    /// Resolved: instance, else plugin, else global interval (or `--interval`).
    pub interval: Duration,
    /// As written (not expanded); "-" values delete labels.
    pub labels: BTreeMap<String, String>,
    pub max_models: usize,
    pub passive: bool,
    pub include_usage: bool,
    /// Also export the OpenTelemetry GenAI names (`gen_ai_*`).
    pub otel_semconv: bool,
    /// None = metrics are served on the proxy port.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// "" = none. With a token and/or a basic-auth user, `/metrics` and `/health` accept
    /// either credential.
    pub metrics_bearer_token: String,
    pub metrics_basic_auth_user: String,
    pub metrics_basic_auth_pass: String,
    /// Per-client attribution (off unless a source is set).
    pub clients: Clients,
    /// Header and keep-alive timeouts and the connection cap of its listeners.
    pub limits: Limits,
}

/// A configuration error; Display is one line naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// The input directory could not be listed.
    #[error("{dir}: cannot read directory: {reason}")]
    ReadDir { dir: String, reason: String },
    /// TOML syntax error.
    #[error("{file}{pos}: TOML parse error: {message}")]
    Syntax {
        file: String,
        pos: Pos,
        message: String,
    },
    /// A value of the wrong type (message starts with the field when known).
    #[error("{file}{pos}: {message}")]
    Type {
        file: String,
        pos: Pos,
        message: String,
    },
    /// A value of the right type that fails validation.
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    /// No `[[instances]]` in any `input.ollama/*.toml`.
    #[error("{dir}: no [[instances]] configured")]
    NoInstances { dir: String },
}

/// Optional `line:column` in a file; displays as ":12:5" or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos(pub Option<(usize, usize)>);

/// Reads, merges and validates `dir/config.toml` and `dir/input.ollama/*.toml`.
pub fn load(dir: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let main_path = dir.join(MAIN_FILE);
    let file = main_path.display().to_string();
    let raw: RawMain = decode::file(&main_path, &mut warnings)?;

    let mut global = validate::global(&file, raw.global)?;
    let writers = raw
        .writers
        .into_iter()
        .enumerate()
        .map(|(i, w)| validate::writer(&file, i, w))
        .collect::<Result<Vec<_>, _>>()?;
    let writer_opt = validate::writer_opt(&file, raw.writer_opt)?;
    let log = validate::log(&file, raw.log)?;

    let (plugin_interval, pending) = load_inputs(dir, &mut warnings)?;
    if let Some(d) = overrides.interval.filter(|d| !d.is_zero()) {
        global.interval = d;
    }
    let fallback = plugin_interval.unwrap_or(global.interval);
    let instances = pending
        .into_iter()
        .enumerate()
        .map(|(index, mut ins)| {
            ins.index = index;
            ins.interval = match overrides.interval.filter(|d| !d.is_zero()) {
                Some(d) => d,
                None if ins.interval.is_zero() => fallback,
                None => ins.interval,
            };
            ins
        })
        .collect();
    let config = Config {
        dir: dir.to_path_buf(),
        global,
        writers,
        writer_opt,
        log,
        instances,
    };
    Ok(Loaded { config, warnings })
}

/// Reads every `*.toml` in `dir/input.ollama` (sorted), returning the plugin interval and the
/// instances (interval zero when unset, index not yet assigned).
fn load_inputs(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<(Option<Duration>, Vec<Instance>), ConfigError> {
    let input_dir = dir.join(INPUT_DIR);
    let dir_text = input_dir.display().to_string();
    let read_dir_err = |e: std::io::Error| ConfigError::ReadDir {
        dir: dir_text.clone(),
        reason: check::io_reason(&e),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&input_dir).map_err(read_dir_err)? {
        let path = entry.map_err(read_dir_err)?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "toml" if path.is_file() => files.push(path),
            "yaml" | "yml" | "json" if path.is_file() => warnings.push(format!(
                "{}: only .toml files are read by ollama-tap (ignored)",
                path.display()
            )),
            _ => {}
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let mut plugin_interval: Option<(Duration, String)> = None;
    let mut instances = Vec::new();
    for path in files {
        let file = path.display().to_string();
        let raw: RawInput = decode::file(&path, warnings)?;
        if let Some(d) = validate::optional_duration(&file, "interval", raw.interval.as_ref())? {
            if let Some((prev, prev_file)) = &plugin_interval {
                if *prev != d {
                    warnings.push(format!(
                        "{file}: interval: overrides {prev:?} from {prev_file}; using {d:?}"
                    ));
                }
            }
            plugin_interval = Some((d, file.clone()));
        }
        for (i, ins) in raw.instances.into_iter().enumerate() {
            let ins = validate::instance(&path, i, ins)?;
            warnings.extend(ins.clients.warning(&file, i));
            instances.push(ins);
        }
    }
    if instances.is_empty() {
        return Err(ConfigError::NoInstances { dir: dir_text });
    }
    validate::listeners(&instances)?;
    Ok((plugin_interval.map(|(d, _)| d), instances))
}

// === impl Config ===

impl Config {
    /// URL of the first writer, used to pick the host IP for `$ip`.
    pub fn first_writer_url(&self) -> Option<&str> {
        self.writers.first().map(|w| w.url.as_str())
    }
}

// === impl Instance ===

impl Instance {
    /// The upstream path prefix without trailing '/' ("" for none), to prepend to request paths.
    pub fn upstream_prefix(&self) -> &str {
        self.ollama_url.path().trim_end_matches('/')
    }
}

// === impl Pos ===

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, ":{line}:{column}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
