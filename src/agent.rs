//! The agent's lifecycle: bind every instance's listener (all or nothing), serve the proxies,
//! check the backends every interval, and stop cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{router, InstanceState};
use crate::config::Config;
use crate::labels::{self, Labeler};
use crate::probe;

/// How long in-flight requests may run on after a stop signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// A listener that could not be bound: names the address and the config field.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} (instances[{index}].proxy_listen_addr = {text:?} in {file}): {source}"
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub index: usize,
    pub text: String,
    pub file: String,
    pub source: std::io::Error,
}

/// The instances, bound and ready to serve.
pub struct Agent {
    pub instances: Vec<Arc<InstanceState>>,
    listeners: Vec<TcpListener>,
}

// === impl Agent ===

impl Agent {
    /// Builds every instance and binds every listener; fails before serving anything if one
    /// address is unusable, so the agent never runs half-configured.
    pub async fn bind(config: &Config) -> Result<Agent, BindError> {
        let first_writer = config.first_writer_url();
        let resolved = labels::resolve_hostname(&config.global.hostname, first_writer);
        // As Categraf: `$hostname` in a label value is the agent's hostname.
        let expand = |m| labels::expand_all_with(m, &resolved, first_writer);
        let global = expand(&config.global.labels);
        let hostname = (!config.global.omit_hostname).then(|| resolved.clone());
        let mut instances = Vec::new();
        let mut listeners = Vec::new();
        for inst in &config.instances {
            let listener = TcpListener::bind(inst.proxy_listen_addr)
                .await
                .map_err(|source| BindError {
                    addr: inst.proxy_listen_addr,
                    index: inst.file_index,
                    text: inst.listen_text.clone(),
                    file: inst.file.display().to_string(),
                    source,
                })?;
            let labeler = Labeler::new(
                &labels::expand_all(&inst.labels, first_writer),
                &global,
                hostname.clone(),
            );
            instances.push(Arc::new(InstanceState::new(inst.clone(), labeler)));
            listeners.push(listener);
        }
        Ok(Agent {
            instances,
            listeners,
        })
    }

    /// The bound addresses, in instance order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves every instance until `stop` resolves, then lets in-flight requests finish for
    /// up to [`GRACE`]. Backend checks run every instance's `interval` (unless `passive`).
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        for (state, listener) in self.instances.iter().zip(self.listeners) {
            let app = router(state.clone());
            let mut rx = stop_rx.clone();
            servers.spawn(async move {
                let shutdown = async move { stopped(&mut rx).await };
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "server stopped");
                }
            });
            if !state.config.passive {
                tokio::spawn(check_loop(state.clone(), stop_rx.clone()));
            }
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
    }
}

/// Checks the backend now and then every `interval`, until stopped.
async fn check_loop(state: Arc<InstanceState>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { probe::check(&state).await; }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
