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

pub(crate) use gate::{families as connection_families, Gate};

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
pub(crate) trait PortService:
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
pub(crate) fn bind(addr: SocketAddr) -> io::Result<Vec<TcpListener>> {
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
pub(crate) type Port<S> = (Vec<TcpListener>, S, Arc<Gate>);

/// The proxy worker threads, one per CPU, each running its own current-thread runtime until
/// [`Workers::finish`]. Ports are handed to them while they run: at start, and when a reload
/// adds an instance; each port has a stop signal of its own, so that a reload can retire one
/// while the others serve on.
pub(crate) struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    /// Dropped by [`Workers::finish`]: each worker thread then ends.
    release: Vec<oneshot::Sender<()>>,
    finished: Vec<oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts [`worker::count`] threads. A worker that cannot start (no thread, no runtime)
    /// is logged and left out; the others serve.
    pub(crate) fn start() -> Workers {
        let mut workers = Workers {
            handles: Vec::new(),
            release: Vec::new(),
            finished: Vec::new(),
        };
        for index in 1..=worker::count() {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (release, released) = oneshot::channel::<()>();
            let (done, finished) = oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("ollama-tap-proxy-{index}"))
                .spawn(move || {
                    worker::enter(index);
                    run_worker(handle_tx, released);
                    drop(done);
                });
            match spawned.map(|_| handle_rx.recv()) {
                Ok(Ok(handle)) => {
                    workers.handles.push(handle);
                    workers.release.push(release);
                    workers.finished.push(finished);
                }
                Ok(Err(_)) => {} // its runtime did not start; the worker logged why
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start a proxy worker")
                }
            }
        }
        workers
    }

    /// Serves `service` on a port's listeners (from [`bind`]: listener i on worker i) behind
    /// `gate` until `stop` is set, then drains its connections; the handles end when drained.
    pub(crate) fn serve<S: PortService>(
        &self,
        (listeners, service, gate): Port<S>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut served = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let Some(handle) = self.handles.get(i % self.handles.len().max(1)) else {
                tracing::error!("no proxy worker is running to serve a port");
                break;
            };
            match listener.into_std() {
                Ok(l) => {
                    let (service, gate, stop) = (service.clone(), gate.clone(), stop.clone());
                    served.push(handle.spawn(async move {
                        match TcpListener::from_std(l) {
                            Ok(l) => serve(l, service, gate, stop).await,
                            Err(e) => tracing::error!(error = %e, "cannot serve a proxy listener"),
                        }
                    }));
                }
                Err(e) => tracing::error!(error = %e, "cannot hand a proxy listener to its worker"),
            }
        }
        served
    }

    /// Lets every worker thread end and waits until they have. Every port must have been
    /// stopped and drained first: what still runs on a worker then is cancelled.
    pub(crate) async fn finish(self) {
        drop(self.release);
        for finished in self.finished {
            let _ = finished.await;
        }
    }
}

/// One worker thread: its own current-thread runtime, whose handle it sends back, serving
/// what it is given until released.
fn run_worker(
    handle: std::sync::mpsc::Sender<tokio::runtime::Handle>,
    released: oneshot::Receiver<()>,
) {
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
    if handle.send(runtime.handle().clone()).is_ok() {
        runtime.block_on(async move {
            let _ = released.await;
        });
    }
}

/// Serves `service` on `listener`, through `gate`, until `stop` is set, then drains the open
/// connections.
pub(crate) async fn serve<S: PortService>(
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
        let io = TokioIo::new(Watched::new(tcp, activity.clone(), gate.limits()));
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
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
