//! The backend: a pool of HTTP/1.1 connections to the one `ollama_url`, each driven by the
//! request that holds it.
//!
//! hyper's generic client spawns a task per connection and hands every answer frame to the
//! request's task through a one-slot channel, so the server side sees `Pending` after each
//! frame and writes once per line. Here nothing is spawned: the request polls its backend
//! connection itself (while sending, then inside [`Answer::poll_frame`]), so every frame the
//! connection has already read is handed on in the same poll, and hyper's server writes all
//! of them at once. The pool is keyed by nothing (there is one backend): an idle connection
//! is a `Vec` pop away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use tokio::time::Instant;
use tower_service::Service;

use super::answer::Answer;
use super::body::UpstreamBody;
use super::headers::strip_hop_by_hop;
use crate::worker;

/// Idle connections kept to the backend in all, shared out between the pools (the original
/// plugin's transport kept 100).
const POOL_IDLE: usize = 100;
/// How long an idle connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keepalive on backend connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// How often idle connections are looked at, to close those the backend closed or that have
/// been idle too long.
const POOL_SWEEP: Duration = Duration::from_secs(1);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Io = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;

/// One backend connection: the handle requests are sent on, and the connection itself, which
/// whoever holds it must poll.
pub(crate) struct Conn {
    pub(super) sender: http1::SendRequest<UpstreamBody>,
    pub(super) conn: http1::Connection<Io, UpstreamBody>,
}

/// The idle connections of one backend.
pub(crate) struct Pool {
    idle: Mutex<Vec<(Conn, Instant)>>,
    /// Idle connections this pool keeps at most.
    cap: usize,
}

/// Why a request got no answer head from the backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be opened.
    #[error("connect: {0}")]
    Connect(#[source] crate::proxy::BoxError),
    /// The connection failed while sending or waiting for the answer head.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The backend: the pool and the parts of `ollama_url` every request needs.
pub(crate) struct Upstream {
    connector: Connector,
    /// One pool per proxy worker thread, and one (index 0) for every other thread: a
    /// connection stays with the runtime whose reactor it is registered with.
    pools: Box<[Arc<Pool>]>,
    /// `scheme://authority` of `ollama_url`, what the connector dials.
    base: Uri,
    /// The `Host` header every request gets.
    pub(crate) host: HeaderValue,
    /// Path prefix of `ollama_url` without its trailing `/` ("" for none).
    prefix: String,
    /// `ollama_url` as configured, for messages.
    pub(crate) url: String,
    /// Bounds connecting, waiting for non-inference answers, each gap inside an answer, and
    /// the agent's own GETs as a whole.
    pub(crate) timeout: Duration,
}

// === impl Upstream ===

impl Upstream {
    pub(crate) fn new(url: &Uri, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let authority: Authority = url
            .authority()
            .expect("validated ollama_url has a host")
            .clone();
        let host =
            HeaderValue::from_str(authority.as_str()).expect("an authority is a header value");
        let base = Uri::builder()
            .scheme(url.scheme().cloned().unwrap_or(Scheme::HTTP))
            .authority(authority)
            .path_and_query("/")
            .build()
            .expect("scheme and authority are valid");
        let n = worker::count() + 1;
        let cap = (POOL_IDLE / n).max(1);
        let pools: Box<[Arc<Pool>]> = (0..n)
            .map(|_| {
                Arc::new(Pool {
                    idle: Mutex::default(),
                    cap,
                })
            })
            .collect();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            for pool in pools.iter() {
                runtime.spawn(sweep(Arc::downgrade(pool)));
            }
        }
        Upstream {
            connector,
            pools,
            base,
            host,
            prefix: url.path().trim_end_matches('/').to_string(),
            url: url.to_string().trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// A client's request head as it goes to the backend: the target origin-form under
    /// `ollama_url`, HTTP/1.1 whatever the client spoke (an HTTP/1.0 client still gets its
    /// answer), no hop-by-hop headers, the backend's `Host`.
    pub(crate) fn address(&self, parts: &mut Parts) {
        parts.uri = self.target_for(parts.uri.path_and_query());
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host.clone());
    }

    /// The origin-form target for a request's path and query under `ollama_url`'s prefix.
    pub(crate) fn target_for(&self, path: Option<&PathAndQuery>) -> Uri {
        if self.prefix.is_empty() {
            // The request's own path and query, shared, not copied or parsed again.
            return path.map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        }
        let path = path.map_or("/", PathAndQuery::as_str);
        // `prefix` is a validated URI path and `path` a valid path: so is their join.
        Uri::try_from(format!("{}{}", self.prefix, path)).unwrap_or_else(|_| Uri::from_static("/"))
    }

    /// Sends `req` (origin-form target, `Host` set) on a pooled or new connection and waits
    /// for the answer head. A reused connection that the backend closed while it was idle
    /// gives the request back unsent: it is sent once more on a new connection.
    pub(crate) async fn send(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Answer>, SendError> {
        let mut req = req;
        let mut reused = true;
        loop {
            let pooled = std::future::poll_fn(|cx| Poll::Ready(self.pool().checkout(cx))).await;
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    reused = false;
                    self.connect().await?
                }
            };
            let sent = std::pin::pin!(conn.sender.try_send_request(req));
            match (Driven {
                sent,
                conn: Some(&mut conn.conn),
            })
            .await
            {
                Ok(res) => return Ok(self.answer(res, conn)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The agent's own GET (the backend check), with `timeout` for the whole answer.
    pub(crate) async fn get(&self, path: &'static str) -> Result<(StatusCode, Bytes), String> {
        let req = Request::get(self.target_for(Some(&PathAndQuery::from_static(path))))
            .header(header::HOST, self.host.clone())
            .header(header::USER_AGENT, crate::USER_AGENT)
            .body(UpstreamBody::empty())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let res = self
                .send(req)
                .await
                .map_err(|e| super::failure::describe(&e))?;
            let status = res.status();
            let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok((status, body.to_bytes()))
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    fn answer(&self, res: Response<Incoming>, conn: Conn) -> Response<Answer> {
        let pool = Arc::clone(self.pool());
        res.map(|body| Answer::new(body, conn, pool))
    }

    /// This thread's pool.
    fn pool(&self) -> &Arc<Pool> {
        &self.pools[worker::index() % self.pools.len()]
    }

    /// Opens a new connection (within the connect timeout).
    async fn connect(&self) -> Result<Conn, SendError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let io = connector
            .call(self.base.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        Ok(Conn { sender, conn })
    }
}

/// Polls a request's answer future and its connection together, in the caller's task.
struct Driven<'a, F> {
    sent: Pin<&'a mut F>,
    conn: Option<&'a mut http1::Connection<Io, UpstreamBody>>,
}

impl<F: Future> Future for Driven<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Poll::Ready(r) = self.sent.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Some(conn) = self.conn.as_mut() {
            if Pin::new(&mut **conn).poll(cx).is_ready() {
                // The connection ended: hyper fails the request in flight, so the answer
                // future is ready now.
                self.conn = None;
            }
            return self.sent.as_mut().poll(cx);
        }
        Poll::Pending
    }
}

// === impl Pool ===

impl Pool {
    /// The most recently used idle connection that can take a request, if any. Each one is
    /// polled first, so that a close by the backend that has already arrived is seen here and
    /// not as a failed request.
    fn checkout(&self, cx: &mut Context<'_>) -> Option<Conn> {
        let now = Instant::now();
        loop {
            let (mut conn, since) = self.idle.lock().pop()?;
            if now.duration_since(since) < POOL_IDLE_TIMEOUT && conn.can_take_a_request(cx) {
                return Some(conn);
            }
        }
    }

    /// Takes a connection back after its answer ended, if it can take another request
    /// (expired ones are left to [`sweep`]).
    pub(super) fn checkin(&self, mut conn: Conn, cx: &mut Context<'_>) {
        if !conn.can_take_a_request(cx) {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < self.cap {
            idle.push((conn, Instant::now()));
        }
    }
}

// === impl Conn ===

impl Conn {
    /// Polls the connection once (so that it goes idle, or a close that has arrived is seen)
    /// and says whether a request can be sent on it now.
    fn can_take_a_request(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_pending() && self.sender.is_ready()
    }
}

/// Every [`POOL_SWEEP`], while the pool exists: drops the idle connections the backend has
/// closed (nobody else polls an idle connection, so nobody else would notice) or that have
/// been idle longer than [`POOL_IDLE_TIMEOUT`].
async fn sweep(pool: std::sync::Weak<Pool>) {
    let mut tick = tokio::time::interval(POOL_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let now = Instant::now();
        pool.idle.lock().retain_mut(|(conn, since)| {
            now.duration_since(*since) < POOL_IDLE_TIMEOUT && conn.can_take_a_request(&mut cx)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::new(&url.parse().unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn the_target_is_origin_form_under_the_configured_prefix() {
        let up = upstream("http://10.0.0.5:11434");
        let pq = PathAndQuery::from_static("/api/tags?x=1");
        assert_eq!(up.target_for(Some(&pq)).to_string(), "/api/tags?x=1");
        assert_eq!(up.target_for(None).to_string(), "/");
        assert_eq!(up.host, "10.0.0.5:11434");
        assert_eq!(up.base.to_string(), "http://10.0.0.5:11434/");
        let up = upstream("https://gpu.example.com/ollama/");
        assert_eq!(up.target_for(Some(&pq)).to_string(), "/ollama/api/tags?x=1");
        assert_eq!(up.host, "gpu.example.com");
        assert_eq!(up.url, "https://gpu.example.com/ollama");
    }
}
