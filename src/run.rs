//! The program's story: flags → config → logs → bind → serve (or `--test` one interval).

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;

use crate::agent::{Agent, StartError};
use crate::categraf_lines;
use crate::cli::Cli;
use crate::config::{self, ConfigError};

/// Exit status for a bad command line or configuration (BSD `EX_USAGE`).
pub const EX_USAGE: i32 = 64;

/// A flag error, kept apart so that it exits with [`EX_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Runs the agent until a stop signal, or one interval with `--test`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    cli.check_inputs().map_err(UsageError)?;
    let loaded = config::load(&cli.configs, &cli.overrides())?;
    init_logs(&cli, &loaded.config)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    // The control runtime: backend checks, pushes, signals, own /metrics listeners. The proxy
    // ports are served on their own worker threads (see `server.rs`), so one thread is enough.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let agent = Agent::bind(&config, !cli.test).await?;
        let addrs = agent.local_addrs().into_iter().zip(agent.metrics_addrs());
        for (inst, (addr, metrics)) in agent.instances.iter().zip(addrs) {
            let metrics = metrics.unwrap_or(addr);
            tracing::info!(listen = %addr, backend = %inst.upstream().url, metrics = %metrics, "proxying");
        }
        if cli.test {
            test_once(agent).await
        } else {
            agent.serve(crate::shutdown::signal()).await;
            Ok(())
        }
    })
}

/// `--test`: serve for one interval (the longest of the instances'), then print every
/// instance's samples to stdout in Categraf's `--test` format. Nothing is pushed.
async fn test_once(agent: Agent) -> anyhow::Result<()> {
    let wait = agent
        .instances
        .iter()
        .map(|i| i.config.interval)
        .max()
        .unwrap_or_default();
    tracing::info!("--test: proxying for {wait:?}, then printing the samples; nothing is pushed");
    let instances = agent.instances.clone();
    agent.serve(tokio::time::sleep(wait)).await;
    let now = chrono::Local::now();
    let hms = now.format("%H:%M:%S").to_string();
    let mut out = String::new();
    for inst in &instances {
        categraf_lines::render(&inst.snapshot(), now.timestamp(), &hms, &mut out);
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("cannot write to stdout")?;
    Ok(())
}

/// Where the logs go, from `[log] file_name` (Categraf's key):
/// - `"stdout"` (the default), `"stderr"` or `""`: stderr. Categraf's `"stdout"` means "the
///   console"; here stdout carries the `--test` samples and nothing else, so console logs
///   always go to stderr.
/// - anything else: a file, created when missing and appended to (no colours). Categraf's
///   rotation keys (`max_size`, `max_age`, `max_backups`, `local_time`, `compress`) are read
///   and ignored. A file that cannot be opened stops the start with a [`ConfigError`] naming
///   config.toml and `log.file_name` (exit status [`EX_USAGE`]).
///
/// Level: `RUST_LOG`, else `--debug`, else `[log] level` from config.toml.
fn init_logs(cli: &Cli, config: &config::Config) -> Result<(), ConfigError> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ if cli.debug => EnvFilter::new("debug"),
        _ => EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (writer, ansi) = match config.log.file_name.as_str() {
        "" | "stdout" | "stderr" => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        path => (BoxMakeWriter::new(Arc::new(open_log(config, path)?)), false),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
    Ok(())
}

/// Opens `[log] file_name` for appending, creating it when missing.
fn open_log(config: &config::Config, path: &str) -> Result<std::fs::File, ConfigError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ConfigError::Invalid {
            file: config.dir.join(config::MAIN_FILE).display().to_string(),
            field: "log.file_name".to_owned(),
            message: format!(
                "cannot open {path:?} for appending: {}",
                config::io_reason(&e)
            ),
        })
}

/// [`EX_USAGE`] for flag and configuration errors, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    let push_config = matches!(e.downcast_ref::<StartError>(), Some(StartError::Push(..)));
    if e.is::<UsageError>() || e.is::<ConfigError>() || push_config {
        EX_USAGE
    } else {
        1
    }
}
