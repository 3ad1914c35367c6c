//! The program's story: flags → config → logs → bind → serve (or `--test` one interval).

mod logs;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Agent, Reload, StartError};
use crate::app::ReloadStatus;
use crate::categraf_lines;
use crate::cli::Cli;
use crate::config::{self, ConfigError};

/// Exit status for a bad command line or configuration (BSD `EX_USAGE`).
pub(crate) const EX_USAGE: i32 = 64;

/// A flag error, kept apart so that it exits with [`EX_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(String);

/// Runs the agent until a stop signal, or one interval with `--test`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    cli.check_inputs().map_err(UsageError)?;
    let loaded = config::load(&cli.configs, &cli.overrides())?;
    let logs = logs::Logs::init(cli.debug, &loaded.config)?;
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
        // Before anything else: from here on, SIGHUP reloads instead of ending the process.
        let hangups = hangups();
        let agent = Agent::bind(&config, !cli.test).await?;
        let addrs = agent.local_addrs().into_iter().zip(agent.metrics_addrs());
        for (inst, (addr, metrics)) in agent.instances.iter().zip(addrs) {
            let metrics = metrics.unwrap_or(addr);
            tracing::info!(listen = %addr, backend = %inst.upstream().url, metrics = %metrics, "proxying");
        }
        if cli.test {
            test_once(agent).await
        } else {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(reload_on_hangup(hangups, cli, logs, agent.reload_status(), tx));
            agent.serve_with(crate::shutdown::signal(), Some(rx)).await;
            Ok(())
        }
    })
}

/// SIGHUP, as a stream (none where there are no such signals).
fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP, so it cannot reload the configuration: {e}");
            None
        }
    }
}

/// Each SIGHUP: the conf dir is read and checked whole (as at start: one line naming the file
/// and the field for what is wrong), the log file opened, then the agent applies it; only
/// once it took do the logs switch. A refused reload changes nothing.
async fn reload_on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    cli: Cli,
    logs: logs::Logs,
    status: Arc<ReloadStatus>,
    agent: mpsc::Sender<Reload>,
) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        tracing::info!(
            "SIGHUP: reloading the configuration from {}",
            cli.configs.display()
        );
        let result = reload_once(&cli, &logs, &agent).await;
        match result {
            Ok(warnings) => {
                status.succeeded();
                for w in warnings {
                    tracing::warn!("{w}");
                }
            }
            Err(e) => {
                status.failed();
                tracing::error!("reload refused, the configuration in force is kept: {e}");
            }
        }
    }
}

async fn reload_once(
    cli: &Cli,
    logs: &logs::Logs,
    agent: &mpsc::Sender<Reload>,
) -> Result<Vec<String>, String> {
    let loaded = config::load(&cli.configs, &cli.overrides()).map_err(|e| e.to_string())?;
    let prepared = logs.prepare(&loaded.config).map_err(|e| e.to_string())?;
    let log = loaded.config.log.clone();
    let (done, answer) = oneshot::channel();
    let reload = Reload {
        config: loaded.config,
        done,
    };
    agent
        .send(reload)
        .await
        .map_err(|_| "the agent is stopping".to_owned())?;
    answer
        .await
        .map_err(|_| "the agent is stopping".to_owned())??;
    logs.apply(prepared);
    tracing::info!(file_name = %log.file_name, level = %log.level, "logs reopened");
    Ok(loaded.warnings)
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

/// [`EX_USAGE`] for flag and configuration errors, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    let push_config = matches!(e.downcast_ref::<StartError>(), Some(StartError::Push(..)));
    if e.is::<UsageError>() || e.is::<ConfigError>() || push_config {
        EX_USAGE
    } else {
        1
    }
}
