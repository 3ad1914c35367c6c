//! One instance while the agent serves it: its listeners (bound, then handed to the proxy
//! workers), the [`Live`] slot its requests read their state from, its stop signal, and its
//! loops (the backend check and push, the status page's sampler).

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{push, StartError};
use crate::app::{own_service, port_service, InstanceState, Live};
use crate::config::Instance;
use crate::probe;
use crate::push::Writers;
use crate::server::{self, stopped, Workers};
use crate::status;

/// The agent's writers, shared with every loop; a reload changes them in place.
pub(super) type SharedWriters = Option<Arc<RwLock<Writers>>>;

/// An instance's listeners, bound and not yet served.
pub(super) struct Bound {
    proxy: Vec<TcpListener>,
    metrics: Option<TcpListener>,
}

/// An instance being served.
pub(super) struct Running {
    pub(crate) live: Arc<Live>,
    /// Its own listener's address (port 0 resolved), when it has one.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Set: its listeners stop accepting and its connections finish their request.
    stop: watch::Sender<bool>,
    /// Its accept loops; each ends once drained.
    served: Vec<JoinHandle<()>>,
    /// Its own listener's accept loop and stop, when it has one.
    metrics: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    loops: Loops,
}

/// An instance's loops, stopped and started again whole when a reload changes its state.
struct Loops {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

// === impl Bound ===

impl Bound {
    /// Binds `inst`'s proxy port (and its own listener); errors name the file and field.
    pub(crate) async fn bind(inst: &Instance) -> Result<Bound, StartError> {
        let error = |field, addr, text: String, source| StartError::Bind {
            field,
            addr,
            index: inst.file_index,
            text,
            file: inst.file.display().to_string(),
            source,
        };
        let addr = inst.proxy_listen_addr;
        let proxy = server::bind(addr)
            .map_err(|e| error("proxy_listen_addr", addr, inst.listen_text.clone(), e))?;
        let metrics = match inst.metrics_listen_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| error("metrics_listen_addr", addr, addr.to_string(), e))?,
            ),
            None => None,
        };
        Ok(Bound { proxy, metrics })
    }

    /// Binds only `inst`'s own listener (a reload that moved it).
    pub(crate) async fn bind_metrics(inst: &Instance) -> Result<Option<TcpListener>, StartError> {
        let Some(addr) = inst.metrics_listen_addr else {
            return Ok(None);
        };
        TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| StartError::Bind {
                field: "metrics_listen_addr",
                addr,
                index: inst.file_index,
                text: addr.to_string(),
                file: inst.file.display().to_string(),
                source,
            })
    }

    pub(crate) fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.first()?.local_addr().ok()
    }

    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref()?.local_addr().ok()
    }
}

// === impl Running ===

impl Running {
    /// Serves `state` on `bound`'s listeners (the proxy port on the workers) and starts its
    /// loops.
    pub(crate) fn start(
        state: Arc<InstanceState>,
        bound: Bound,
        workers: &Workers,
        writers: &SharedWriters,
    ) -> Running {
        let metrics_addr = bound.metrics_addr();
        let live = Live::new(state.clone());
        let (stop, stop_rx) = watch::channel(false);
        let port = (
            bound.proxy,
            port_service(live.clone()),
            state.proxy_gate.clone(),
        );
        let served = workers.serve(port, &stop_rx);
        let mut running = Running {
            live,
            metrics_addr,
            stop,
            served,
            metrics: None,
            loops: Loops::start(&state, writers),
        };
        running.serve_metrics(bound.metrics, &state);
        running
    }

    /// Serves `listener` as the instance's own listener (`/metrics`, `/health`, `/status`),
    /// stopping the one it had.
    pub(crate) fn serve_metrics(&mut self, listener: Option<TcpListener>, state: &InstanceState) {
        if let Some((stop, _)) = self.metrics.take() {
            let _ = stop.send(true);
        }
        let (Some(l), Some(gate)) = (listener, &state.metrics_gate) else {
            return;
        };
        self.metrics_addr = l.local_addr().ok();
        let (stop, rx) = watch::channel(false);
        let service = own_service(self.live.clone());
        let task = tokio::spawn(server::serve(l, service, gate.clone(), rx));
        self.metrics = Some((stop, task));
    }

    /// Serves new requests with `state` and restarts the loops with it (its interval, its
    /// labels); requests in flight finish with the state they started with.
    pub(crate) fn update(&mut self, state: Arc<InstanceState>, writers: &SharedWriters) {
        self.live.set(state.clone());
        self.loops.stop();
        self.loops = Loops::start(&state, writers);
    }

    /// The state new requests get.
    pub(crate) fn state(&self) -> Arc<InstanceState> {
        self.live.state()
    }

    /// Stops accepting: each connection finishes the request it is serving, then closes.
    pub(crate) fn signal_stop(&self) {
        let _ = self.stop.send(true);
        if let Some((stop, _)) = &self.metrics {
            let _ = stop.send(true);
        }
    }

    /// After [`Running::signal_stop`]: waits until every connection has closed (or `until`),
    /// then stops the loops. Returns the accept loops still draining at the deadline.
    pub(crate) async fn drained(mut self, until: tokio::time::Instant) -> usize {
        let mut tasks = std::mem::take(&mut self.served);
        tasks.extend(self.metrics.take().map(|(_, task)| task));
        let mut late = 0;
        for task in tasks {
            if tokio::time::timeout_at(until, task).await.is_err() {
                late += 1;
            }
        }
        self.loops.stop();
        late
    }
}

// === impl Loops ===

impl Loops {
    fn start(state: &Arc<InstanceState>, writers: &SharedWriters) -> Loops {
        let (stop, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(instance_loop(state.clone(), writers.clone(), rx.clone())),
            tokio::spawn(status::sample_every(
                state.ring.clone(),
                state.proxy.store.clone(),
                rx,
            )),
        ];
        Loops { stop, tasks }
    }

    fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// One instance's beat: check the backend (so `ollama_up` is fresh), then queue the snapshot.
async fn instance_loop(
    state: Arc<InstanceState>,
    writers: SharedWriters,
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
                    push(&w.read(), &state.snapshot());
                }
            }
            _ = stopped(&mut stop) => return,
        }
    }
}
