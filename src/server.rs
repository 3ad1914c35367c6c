//! The proxy ports' server: a plain hyper HTTP/1 connection per accepted socket, no router,
//! on [`crate::worker::count`] threads, each with its own current-thread runtime.
//!
//! Every worker has its own listening socket on every proxy port (`SO_REUSEPORT`: the kernel
//! spreads new connections over the workers, as nginx's `listen … reuseport`). Each connection is
//! one task on the worker that accepted it: it reads the request, forwards it, and drives the
//! backend connection that carries the answer (see `proxy/upstream.rs`), so a request stays on
//! one thread from its first byte to its last, and no wake-up crosses threads. On stop, no
//! new connection is accepted, every connection finishes the request it is serving and
//! closes, and [`serve_on_workers`] returns once the last one has.
//!
//! [`serve`], the accept loop, also serves `metrics_listen_addr` (on the main runtime). Every
//! listener (the proxy port's workers together, and `metrics_listen_addr`) has a [`Gate`]: the
//! connection cap and counters (`gate.rs`); every connection has the header and keep-alive
//! clocks, which run only between requests (`clock.rs`).

mod clock;
mod gate;

pub use gate::{families as connection_families, Gate};

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::proxy::ProxyBody;
use crate::worker;
use clock::{Activity, Tracked, Watched};

/// How long the accept loop rests after an error such as `EMFILE` (out of file descriptors),
/// so that it does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What a proxy port serves: a hyper service that answers every request (errors are answers),
/// cloned onto every worker and every connection.
pub trait PortService:
    Service<
        Request<Incoming>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> PortService for S where
    S: Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Listening backlog of each worker's socket (what `TcpListener::bind` uses).
const BACKLOG: u32 = 1024;

/// Binds `addr` for the proxy workers: one socket per worker on the same address with
/// `SO_REUSEPORT`, so that the kernel spreads new connections over the workers.
///
/// `SO_REUSEPORT` would also let a second process of the same user share the port unnoticed;
/// so the address is first bound once without it, which fails as a plain bind does when
/// anything (another agent included) already listens there.
pub fn bind(addr: SocketAddr) -> io::Result<Vec<TcpListener>> {
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let mut listeners = Vec::with_capacity(worker::count());
    let mut at = addr;
    for _ in 0..worker::count() {
        let socket = if at.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(at)?;
        let listener = socket.listen(BACKLOG)?;
        at = listener.local_addr()?; // port 0: the others join the port the first one got
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A port's listeners from [`bind`] (one per worker), its service and its gate (shared by
/// the workers, so that the cap holds for the port).
pub type Port<S> = (Vec<TcpListener>, S, Arc<Gate>);

/// One worker's share of a port.
type WorkerPort<S> = (std::net::TcpListener, S, Arc<Gate>);

/// Serves every port on the proxy workers until `stop` is set, then drains. A worker that
/// cannot start (no thread, no runtime) is logged and left out; the others serve.
pub async fn serve_on_workers<S: PortService>(ports: Vec<Port<S>>, stop: watch::Receiver<bool>) {
    // worker i gets listener i of every port
    let workers = worker::count();
    let mut per_worker: Vec<Vec<WorkerPort<S>>> = (0..workers).map(|_| Vec::new()).collect();
    for (listeners, service, gate) in ports {
        for (i, listener) in listeners.into_iter().enumerate() {
            match listener.into_std() {
                Ok(l) => per_worker[i % workers].push((l, service.clone(), gate.clone())),
                Err(e) => tracing::error!(error = %e, "cannot hand a proxy listener to its worker"),
            }
        }
    }
    let mut finished = Vec::new();
    for (i, ports) in per_worker.into_iter().enumerate() {
        let index = i + 1;
        let (done, finish) = oneshot::channel::<()>();
        let stop = stop.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ollama-tap-proxy-{index}"))
            .spawn(move || {
                worker::enter(index);
                run_worker(ports, stop);
                drop(done);
            });
        match spawned {
            Ok(_) => finished.push(finish),
            Err(e) => tracing::error!(worker = index, error = %e, "cannot start a proxy worker"),
        }
    }
    for finish in finished {
        let _ = finish.await;
    }
}

/// One worker thread: its own current-thread runtime serving every port until drained.
fn run_worker<S: PortService>(ports: Vec<WorkerPort<S>>, stop: watch::Receiver<bool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(worker = worker::index(), error = %e, "cannot start a proxy worker's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let mut ports_served = JoinSet::new();
        for (listener, service, gate) in ports {
            match TcpListener::from_std(listener) {
                Ok(l) => {
                    ports_served.spawn(serve(l, service, gate, stop.clone()));
                }
                Err(e) => tracing::error!(error = %e, "cannot serve a proxy listener"),
            }
        }
        while ports_served.join_next().await.is_some() {}
    });
}

/// Serves `service` on `listener`, through `gate`, until `stop` is set, then drains the open
/// connections.
pub async fn serve<S: PortService>(
    listener: TcpListener,
    service: S,
    gate: Arc<Gate>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "cannot accept connections; retrying every {ACCEPT_BACKOFF:?}");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if failing {
            tracing::info!("accepting connections again");
            failing = false;
        }
        let Some((tcp, slot)) = gate.admit(tcp) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Watched::new(tcp, activity.clone(), gate.limits));
        let service = Tracked {
            inner: service.clone(),
            activity,
        };
        let stop = stop.clone();
        conns.spawn(async move {
            connection(io, service, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// One client connection, until it closes, times out or (after `stop`) its current request
/// is done.
async fn connection<S: PortService>(
    io: TokioIo<Watched>,
    service: Tracked<S>,
    mut stop: watch::Receiver<bool>,
) {
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped(&mut stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Errors of one connection attempt that say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Resolves once the stop flag is set (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
