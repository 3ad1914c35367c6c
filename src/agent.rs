//! The agent's lifecycle: bind every instance's listener and start the writers (all or
//! nothing), serve the proxies, check each backend and push each instance's snapshot every
//! interval, apply a reload (SIGHUP) without a gap, and on a stop signal drain, push a final
//! snapshot and flush.
//!
//! One owner per piece: [`Agent`] owns the configuration in force, the writers and the
//! instances; each instance ([`running::Running`]) owns its listeners, its `Live` slot and
//! its loops; `reload.rs` is the one place that turns a configuration change into actions
//! (`plan.rs` says which instances continue, start and stop).

mod plan;
mod reload;
mod running;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::app::{AgentMetrics, InstanceState, ReloadStatus};
use crate::config::Config;
use crate::labels::{self, Labeler};
use crate::push::{PushError, Writers};
use crate::server::{stopped, Workers};
use crate::snapshot::Family;
use running::{Bound, Running, SharedWriters};

/// How long in-flight requests may run on after a stop signal.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long the writers may take to deliver what is queued at shutdown.
pub const FLUSH: Duration = Duration::from_secs(5);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The OS error is the source: `main` prints the chain (`{:#}`) after this line.
    #[error("{file}: instances[{index}].{field} = {text:?}: cannot listen on {addr}")]
    Bind {
        /// `proxy_listen_addr` or `metrics_listen_addr`.
        field: &'static str,
        addr: SocketAddr,
        /// The instance's position in its file.
        index: usize,
        text: String,
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {0}", file = .1)]
    Push(PushError, String),
}

/// A reload: the configuration to apply (loaded and checked), and where to say whether it took.
pub(crate) struct Reload {
    pub(crate) config: Config,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// The instances, bound and ready to serve.
pub struct Agent {
    /// The configuration in force.
    config: Config,
    /// Whether the writers run (not with `--test`).
    push: bool,
    /// Each instance's state as bound, in config order (what `--test` prints).
    pub instances: Vec<Arc<InstanceState>>,
    /// Bound, not yet served (until [`Agent::serve`]).
    bound: Vec<Bound>,
    running: Vec<Running>,
    agent_metrics: Arc<AgentMetrics>,
    writers: SharedWriters,
    reloads: Arc<ReloadStatus>,
    /// The agent's own series' loop: its stop and task.
    self_loop: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

// === impl Agent ===

impl Agent {
    /// Builds every instance, binds every listener and (when `push`) starts the writers; fails
    /// before serving anything if one of them cannot start, so the agent never runs
    /// half-configured.
    pub async fn bind(config: &Config, push: bool) -> Result<Agent, StartError> {
        let mut bound = Vec::new();
        for inst in &config.instances {
            bound.push(Bound::bind(inst).await?);
        }
        let writers = match push && !config.writers.is_empty() {
            true => {
                let writers = Writers::start(&config.writers, &config.writer_opt)
                    .map_err(|e| StartError::Push(e, main_file(config)))?;
                Some(Arc::new(RwLock::new(writers)))
            }
            false => None,
        };
        let reloads = Arc::new(ReloadStatus::default());
        let (global, labelers) = labelers(config);
        let agent_metrics = agent_metrics(&writers, global, &reloads);
        let instances = config
            .instances
            .iter()
            .zip(labelers)
            .map(|(inst, labeler)| {
                Arc::new(InstanceState::new(
                    inst.clone(),
                    labeler,
                    agent_metrics.clone(),
                ))
            })
            .collect();
        Ok(Agent {
            config: config.clone(),
            push,
            instances,
            bound,
            running: Vec::new(),
            agent_metrics,
            writers,
            reloads,
            self_loop: None,
        })
    }

    /// The bound `/metrics` addresses, in instance order (`None`: on the proxy port).
    pub fn metrics_addrs(&self) -> Vec<Option<SocketAddr>> {
        self.bound.iter().map(Bound::metrics_addr).collect()
    }

    /// The bound addresses, in instance order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound.iter().filter_map(Bound::proxy_addr).collect()
    }

    /// Where the outcome of reloads is kept (the `ollama_tap_config_last_reload_*` gauges).
    pub(crate) fn reload_status(&self) -> Arc<ReloadStatus> {
        self.reloads.clone()
    }

    /// Serves every instance until `stop` resolves; see [`Agent::serve_with`].
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        self.serve_with(stop, None).await;
    }

    /// Serves every instance until `stop` resolves, applying each [`Reload`] that arrives.
    /// Each instance checks its backend (unless `passive`) and pushes its snapshot every
    /// `interval`. On stop: in-flight requests get up to [`GRACE`], then a final snapshot of
    /// every instance is queued and the writers get up to [`FLUSH`] to deliver.
    pub(crate) async fn serve_with(
        mut self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
        mut reloads: Option<mpsc::Receiver<Reload>>,
    ) {
        let workers = Workers::start();
        for (state, bound) in self
            .instances
            .clone()
            .into_iter()
            .zip(std::mem::take(&mut self.bound))
        {
            self.running
                .push(Running::start(state, bound, &workers, &self.writers));
        }
        self.start_self_loop();
        tokio::pin!(stop);
        loop {
            let reload = async {
                match reloads.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut stop => break,
                Some(r) = reload => {
                    let result = self.reload(r.config, &workers).await;
                    let _ = r.done.send(result);
                }
            }
        }
        self.shut_down(workers).await;
    }

    /// Drains every instance, queues the final snapshots and flushes the writers.
    async fn shut_down(mut self, workers: Workers) {
        tracing::info!("stopping: letting in-flight requests finish (up to {GRACE:?})");
        for r in &self.running {
            r.signal_stop();
        }
        let until = tokio::time::Instant::now() + GRACE;
        let mut late = 0;
        let mut last = Vec::new();
        for r in self.running.drain(..) {
            last.push(r.state());
            late += r.drained(until).await;
        }
        if late > 0 {
            tracing::warn!("grace period over: {late} listener(s) still had requests in flight");
        }
        self.stop_self_loop();
        workers.finish().await;
        let Some(lock) = self.writers.take() else {
            return;
        };
        let writers = std::mem::take(&mut *lock.write());
        for state in &last {
            push(&writers, &state.snapshot());
        }
        push(&writers, &self.agent_metrics.snapshot());
        let left = writers.flush(FLUSH).await;
        if left == 0 {
            tracing::info!("final snapshot delivered");
        }
    }

    fn start_self_loop(&mut self) {
        self.stop_self_loop();
        if let Some(w) = &self.writers {
            let (stop, rx) = watch::channel(false);
            let every = self.config.global.interval;
            let task = tokio::spawn(self_loop(self.agent_metrics.clone(), w.clone(), every, rx));
            self.self_loop = Some((stop, task));
        }
    }

    fn stop_self_loop(&mut self) {
        if let Some((stop, task)) = self.self_loop.take() {
            let _ = stop.send(true);
            task.abort();
        }
    }
}

/// `config.toml`'s path, for messages.
fn main_file(config: &Config) -> String {
    config
        .dir
        .join(crate::config::MAIN_FILE)
        .display()
        .to_string()
}

/// The agent's own labeler (global labels, `agent_hostname`) and each instance's.
fn labelers(config: &Config) -> (Labeler, Vec<Labeler>) {
    let first_writer = config.first_writer_url();
    let resolved = labels::resolve_hostname(&config.global.hostname, first_writer);
    // As Categraf: `$hostname` in a label value is the agent's hostname.
    let expand = |m| labels::expand_all_with(m, &resolved, first_writer);
    let global = expand(&config.global.labels);
    let hostname = (!config.global.omit_hostname).then(|| resolved.clone());
    let own = Labeler::new(&Default::default(), &global, hostname.clone());
    let each = config
        .instances
        .iter()
        .map(|inst| Labeler::new(&expand(&inst.labels), &global, hostname.clone()))
        .collect();
    (own, each)
}

/// The agent's own series: the writers' metrics and the reload gauges.
fn agent_metrics(
    writers: &SharedWriters,
    labeler: Labeler,
    reloads: &Arc<ReloadStatus>,
) -> Arc<AgentMetrics> {
    Arc::new(AgentMetrics {
        push: writers.as_ref().map(|w| w.read().metrics()),
        labeler,
        reloads: reloads.clone(),
    })
}

/// The agent's own series (the writers' counters), every `[global] interval`.
async fn self_loop(
    agent_metrics: Arc<AgentMetrics>,
    writers: Arc<RwLock<Writers>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => push(&writers.read(), &agent_metrics.snapshot()),
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Queues one snapshot, stamped now, for every writer.
fn push(writers: &Writers, families: &[Family]) {
    writers.enqueue_families(families, now_ms());
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
