//! The agent's lifecycle: bind every instance's listener and start the writers (all or
//! nothing), serve the proxies, check each backend and push each instance's snapshot every
//! interval, and on a stop signal drain, push a final snapshot and flush.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::{own_service, port_service, AgentMetrics, InstanceState};
use crate::config::Config;
use crate::labels::{self, Labeler};
use crate::probe;
use crate::push::{PushError, Writers};
use crate::server::{self, stopped};
use crate::snapshot::Family;
use crate::status;

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

/// The instances, bound and ready to serve.
pub struct Agent {
    pub instances: Vec<Arc<InstanceState>>,
    pub agent_metrics: Arc<AgentMetrics>,
    /// Each instance's proxy port: one listening socket per proxy worker (see `server::bind`).
    listeners: Vec<Vec<TcpListener>>,
    /// Each instance's own listener for `/metrics` and `/health`, when it has one.
    metrics_listeners: Vec<Option<TcpListener>>,
    writers: Option<Writers>,
    /// `[global] interval`, for the agent's own series.
    interval: Duration,
}

// === impl Agent ===

impl Agent {
    /// Builds every instance, binds every listener and (when `push`) starts the writers; fails
    /// before serving anything if one of them cannot start, so the agent never runs
    /// half-configured.
    pub async fn bind(config: &Config, push: bool) -> Result<Agent, StartError> {
        let first_writer = config.first_writer_url();
        let resolved = labels::resolve_hostname(&config.global.hostname, first_writer);
        // As Categraf: `$hostname` in a label value is the agent's hostname.
        let expand = |m| labels::expand_all_with(m, &resolved, first_writer);
        let global = expand(&config.global.labels);
        let hostname = (!config.global.omit_hostname).then(|| resolved.clone());

        let mut listeners = Vec::new();
        let mut metrics_listeners = Vec::new();
        for inst in &config.instances {
            let bind = |field, addr: SocketAddr, text: String| async move {
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        field,
                        addr,
                        index: inst.file_index,
                        text,
                        file: inst.file.display().to_string(),
                        source,
                    })
            };
            let addr = inst.proxy_listen_addr;
            listeners.push(server::bind(addr).map_err(|source| StartError::Bind {
                field: "proxy_listen_addr",
                addr,
                index: inst.file_index,
                text: inst.listen_text.clone(),
                file: inst.file.display().to_string(),
                source,
            })?);
            metrics_listeners.push(match inst.metrics_listen_addr {
                Some(addr) => Some(bind("metrics_listen_addr", addr, addr.to_string()).await?),
                None => None,
            });
        }
        let writers = if push && !config.writers.is_empty() {
            let main = config
                .dir
                .join(crate::config::MAIN_FILE)
                .display()
                .to_string();
            Some(
                Writers::start(&config.writers, &config.writer_opt)
                    .map_err(|e| StartError::Push(e, main))?,
            )
        } else {
            None
        };
        let agent_metrics = Arc::new(AgentMetrics {
            push: writers.as_ref().map(Writers::metrics),
            labeler: Labeler::new(&Default::default(), &global, hostname.clone()),
        });
        let instances = config
            .instances
            .iter()
            .map(|inst| {
                let labeler = Labeler::new(&expand(&inst.labels), &global, hostname.clone());
                Arc::new(InstanceState::new(
                    inst.clone(),
                    labeler,
                    agent_metrics.clone(),
                ))
            })
            .collect();
        Ok(Agent {
            instances,
            agent_metrics,
            listeners,
            metrics_listeners,
            writers,
            interval: config.global.interval,
        })
    }

    /// The bound `/metrics` addresses, in instance order (`None`: on the proxy port).
    pub fn metrics_addrs(&self) -> Vec<Option<SocketAddr>> {
        self.metrics_listeners
            .iter()
            .map(|l| l.as_ref().and_then(|l| l.local_addr().ok()))
            .collect()
    }

    /// The bound addresses, in instance order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.first()?.local_addr().ok())
            .collect()
    }

    /// Serves every instance until `stop` resolves. Each instance checks its backend (unless
    /// `passive`) and pushes its snapshot every `interval`. On stop: in-flight requests get up
    /// to [`GRACE`], then a final snapshot of every instance is queued and the writers get up to
    /// [`FLUSH`] to deliver.
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let writers = self.writers.map(Arc::new);
        let mut servers = JoinSet::new();
        let mut loops = JoinSet::new();
        let mut ports = Vec::new();
        let listeners = self.listeners.into_iter().zip(self.metrics_listeners);
        for (state, (listener, metrics_listener)) in self.instances.iter().zip(listeners) {
            ports.push((
                listener,
                port_service(state.clone()),
                state.proxy_gate.clone(),
            ));
            if let (Some(l), Some(gate)) = (metrics_listener, &state.metrics_gate) {
                let service = own_service(state.clone());
                servers.spawn(server::serve(l, service, gate.clone(), stop_rx.clone()));
            }
            loops.spawn(instance_loop(
                state.clone(),
                writers.clone(),
                stop_rx.clone(),
            ));
            loops.spawn(status::sample_every(
                state.ring.clone(),
                state.proxy.store.clone(),
                stop_rx.clone(),
            ));
        }
        servers.spawn(server::serve_on_workers(ports, stop_rx.clone()));
        if let Some(w) = &writers {
            loops.spawn(self_loop(
                self.agent_metrics.clone(),
                w.clone(),
                self.interval,
                stop_rx.clone(),
            ));
        }

        stop.await;
        tracing::info!("stopping: letting in-flight requests finish (up to {GRACE:?})");
        let _ = stop_tx.send(true);
        let drained = async { while servers.join_next().await.is_some() {} };
        if tokio::time::timeout(GRACE, drained).await.is_err() {
            tracing::warn!(
                "grace period over: {} server(s) still had requests in flight",
                servers.len()
            );
        }
        while loops.join_next().await.is_some() {}
        let Some(writers) = writers.and_then(Arc::into_inner) else {
            return;
        };
        for state in &self.instances {
            push(&writers, &state.snapshot());
        }
        push(&writers, &self.agent_metrics.snapshot());
        let left = writers.flush(FLUSH).await;
        if left == 0 {
            tracing::info!("final snapshot delivered");
        }
    }
}

/// One instance's beat: check the backend (so `ollama_up` is fresh), then queue the snapshot.
async fn instance_loop(
    state: Arc<InstanceState>,
    writers: Option<Arc<Writers>>,
    mut stop: watch::Receiver<bool>,
) {
    if state.config.passive && writers.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(state.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !state.config.passive {
                    probe::check(state.upstream(), state.store(), &state.backend).await;
                }
                if let Some(w) = &writers {
                    push(w, &state.snapshot());
                }
            }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// The agent's own series (the writers' counters), every `[global] interval`.
async fn self_loop(
    agent_metrics: Arc<AgentMetrics>,
    writers: Arc<Writers>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => push(&writers, &agent_metrics.snapshot()),
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
