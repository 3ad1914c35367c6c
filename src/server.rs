//! The proxy port's server: a plain hyper HTTP/1 connection per accepted socket, no router.
//!
//! Each connection is one task: it reads the request, forwards it, and drives the backend
//! connection that carries the answer (see `proxy/upstream.rs`), so a request stays on the
//! task that accepted it from its first byte to its last. On stop, no new connection is
//! accepted, every connection finishes the request it is serving and closes, and [`serve`]
//! returns once the last one has.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::ProxyBody;

/// How long the accept loop rests after an error such as `EMFILE` (out of file descriptors),
/// so that it does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` until `stop` is set, then drains the open connections.
pub async fn serve<S>(listener: TcpListener, service: S, mut stop: watch::Receiver<bool>)
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
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
        let _ = tcp.set_nodelay(true);
        conns.spawn(connection(TokioIo::new(tcp), service.clone(), stop.clone()));
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// One client connection, until it closes or (after `stop`) its current request is done.
async fn connection<S>(
    io: TokioIo<tokio::net::TcpStream>,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>,
{
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
