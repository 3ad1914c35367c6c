//! Where the logs go, and changing it on a reload: `[log] file_name` is opened again (so that
//! logrotate without `copytruncate` works: the old file is moved, a SIGHUP makes a new one)
//! and a new `[log] level` applies at once.
//!
//! - `"stdout"` (the default), `"stderr"` or `""`: stderr. Categraf's `"stdout"` means "the
//!   console"; here stdout carries the `--test` samples and nothing else, so console logs
//!   always go to stderr.
//! - anything else: a file, created when missing and appended to (no colours). Categraf's
//!   rotation keys (`max_size`, `max_age`, `max_backups`, `local_time`, `compress`) are read
//!   and ignored. A file that cannot be opened stops the start (or refuses the reload) with a
//!   [`ConfigError`] naming config.toml and `log.file_name`.
//!
//! Level: `RUST_LOG`, else `--debug`, else `[log] level` from config.toml.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use parking_lot::RwLock;
use tracing_subscriber::EnvFilter;

use crate::config::{self, ConfigError};

/// The log destination in force, and the handle that changes the level.
pub(crate) struct Logs {
    target: Arc<Target>,
    /// Sets the level filter in force (`None` when another subscriber was installed first).
    filter: Option<Box<dyn Fn(EnvFilter) + Send + Sync>>,
    debug: bool,
}

/// What [`Logs::prepare`] opened for a reload, applied by [`Logs::apply`] once it took.
pub(crate) struct Prepared {
    sink: Sink,
    filter: EnvFilter,
}

/// Where log lines are written: swapped whole by a reload.
struct Target(RwLock<Sink>);

enum Sink {
    Console,
    File(std::fs::File),
}

impl Logs {
    /// Installs the subscriber for `config` (once per process: a second call keeps the first).
    pub(crate) fn init(debug: bool, config: &config::Config) -> Result<Logs, ConfigError> {
        let sink = open(config)?;
        let ansi = matches!(sink, Sink::Console) && std::io::stderr().is_terminal();
        let target = Arc::new(Target(RwLock::new(sink)));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter(debug, config))
            .with_writer(target.clone())
            .with_ansi(ansi)
            .with_target(false)
            .with_filter_reloading();
        let handle = builder.reload_handle();
        let filter = builder.try_init().is_ok().then(|| {
            Box::new(move |f| {
                let _ = handle.reload(f);
            }) as Box<dyn Fn(EnvFilter) + Send + Sync>
        });
        Ok(Logs {
            target,
            filter,
            debug,
        })
    }

    /// Opens what `config` logs to, without touching the logs in force.
    pub(crate) fn prepare(&self, config: &config::Config) -> Result<Prepared, ConfigError> {
        Ok(Prepared {
            sink: open(config)?,
            filter: filter(self.debug, config),
        })
    }

    /// Logs to what `prepared` opened, at its level, from now on.
    pub(crate) fn apply(&self, prepared: Prepared) {
        *self.target.0.write() = prepared.sink;
        if let Some(set) = &self.filter {
            set(prepared.filter);
        }
    }
}

fn filter(debug: bool, config: &config::Config) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ if debug => EnvFilter::new("debug"),
        _ => EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info")),
    }
}

/// Opens `[log] file_name` for appending (created when missing), or the console.
fn open(config: &config::Config) -> Result<Sink, ConfigError> {
    let path = match config.log.file_name.as_str() {
        "" | "stdout" | "stderr" => return Ok(Sink::Console),
        path => path,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Sink::File)
        .map_err(|e| ConfigError::Invalid {
            file: config.dir.join(config::MAIN_FILE).display().to_string(),
            field: "log.file_name".to_owned(),
            message: format!(
                "cannot open {path:?} for appending: {}",
                config::io_reason(&e)
            ),
        })
}

impl Write for &Target {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &*self.0.read() {
            Sink::Console => std::io::stderr().write(buf),
            Sink::File(f) => (&*f).write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &*self.0.read() {
            Sink::Console => std::io::stderr().flush(),
            Sink::File(f) => (&*f).flush(),
        }
    }
}
