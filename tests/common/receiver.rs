//! A remote-write receiver for tests: HTTP/1 on 127.0.0.1, checks the four required headers on
//! every request, decodes snappy (block) + protobuf with the crate's own types, records every
//! request and answers from a [`Script`]. It can go down (stop listening, close every
//! connection) and come back on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ollama_tap::push::proto::{TimeSeries, WriteRequest};
use parking_lot::Mutex;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How the receiver answers the n-th request (0-based).
#[derive(Clone, Debug)]
pub enum Script {
    /// This status, always.
    Always(u16),
    /// These statuses in turn, then 204 for ever.
    Sequence(Vec<u16>),
    /// `status` for the first `n` requests, then 204.
    FailFirst { status: u16, n: usize },
    /// 429 with `Retry-After: secs` for the first `n` requests, then 204.
    RetryAfter429 { secs: u64, n: usize },
    /// Never answers (the request hangs until the client gives up).
    Hang,
    /// Nightingale's pushgw with its write queues full: 499 (its default
    /// `OverLimitStatusCode`) with its body, `write queue full, metric count over limit: N`,
    /// for the first `n` requests, then 204.
    N9eQueueFull { n: usize },
    /// 413 to any request holding more than `max_samples` samples, 204 to the others.
    MaxSamples(usize),
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    /// When the request was complete (body read).
    pub at: Instant,
    /// The status the receiver answered (0 for [`Script::Hang`]).
    pub status: u16,
    pub headers: HeaderMap,
    /// Decoded `Authorization: Basic` (user, password).
    pub basic_auth: Option<(String, String)>,
    pub series: Vec<TimeSeries>,
}

/// The running receiver.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    script: Script,
    received: Mutex<Vec<ReceivedRequest>>,
    /// Header or decoding violations; `received()` fails the test on any.
    problems: Mutex<Vec<String>>,
    arrived: Notify,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

// === impl Receiver ===

impl Receiver {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub async fn start(script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script,
            received: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            connections: Mutex::new(Vec::new()),
        });
        let server = tokio::spawn(accept_loop(listener, state.clone()));
        Receiver {
            addr,
            state,
            server: Mutex::new(Some(server)),
        }
    }

    /// The remote-write URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order. Fails the test if any request lacked a required
    /// header or did not decode.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        let problems = self.state.problems.lock().clone();
        assert!(
            problems.is_empty(),
            "receiver saw bad requests: {problems:#?}"
        );
        self.state.received.lock().clone()
    }

    /// The series of the accepted (2xx) requests, in arrival order.
    pub fn accepted_series(&self) -> Vec<TimeSeries> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| r.series)
            .collect()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        self.wait_until(timeout, |r| r.len() >= n, &format!("{n} requests"))
            .await
    }

    /// Waits until at least `n` series were accepted; panics after `timeout`.
    pub async fn wait_for_accepted_series(&self, n: usize, timeout: Duration) -> Vec<TimeSeries> {
        let ok = |r: &[ReceivedRequest]| {
            r.iter()
                .filter(|r| (200..300).contains(&r.status))
                .map(|r| r.series.len())
                .sum::<usize>()
                >= n
        };
        self.wait_until(timeout, ok, &format!("{n} accepted series"))
            .await;
        self.accepted_series()
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedRequest]) -> bool,
        what: &str,
    ) -> Vec<ReceivedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "receiver: waited {timeout:?} for {what}, got {} requests",
                    received.len()
                );
            }
        }
    }

    /// Goes down: stops listening and closes every open connection (clients see refusals).
    pub async fn stop(&self) {
        let server = self.server.lock().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
        let connections: Vec<_> = self.state.connections.lock().drain(..).collect();
        for c in connections {
            c.abort();
            let _ = c.await;
        }
    }

    /// Comes back on the same port.
    pub async fn restart(&self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let server = tokio::spawn(accept_loop(listener, self.state.clone()));
        *self.server.lock() = Some(server);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().take() {
            server.abort();
        }
        for c in self.state.connections.lock().drain(..) {
            c.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let st = state.clone();
        let conn = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut connections = state.connections.lock();
        connections.retain(|c| !c.is_finished());
        connections.push(conn);
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut problems = check_headers(&parts.headers);
    if parts.method != hyper::http::Method::POST {
        problems.push(format!("method {}", parts.method));
    }
    let series = match decode(&body) {
        Ok(series) => series,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    let (status, retry_after, text) = {
        let mut received = state.received.lock();
        let samples = series.iter().map(|s| s.samples.len()).sum();
        let (status, retry_after, text) = state.script.answer(received.len(), samples);
        received.push(ReceivedRequest {
            at: Instant::now(),
            status,
            basic_auth: basic_auth(&parts.headers),
            headers: parts.headers,
            series,
        });
        (status, retry_after, text)
    };
    state.problems.lock().extend(problems);
    state.arrived.notify_waiters();
    if status == 0 {
        std::future::pending::<()>().await;
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    Ok(response)
}

fn check_headers(headers: &HeaderMap) -> Vec<String> {
    let user_agent = format!("ollama-tap/{}", ollama_tap::VERSION);
    let want = [
        ("content-encoding", "snappy"),
        ("content-type", "application/x-protobuf"),
        ("user-agent", user_agent.as_str()),
        ("x-prometheus-remote-write-version", "0.1.0"),
    ];
    let mut problems = Vec::new();
    for (name, value) in want {
        let got: Vec<_> = headers.get_all(name).iter().collect();
        if got.len() != 1 || got[0] != value {
            problems.push(format!("header {name}: want [{value:?}], got {got:?}"));
        }
    }
    problems
}

fn decode(body: &[u8]) -> Result<Vec<TimeSeries>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy block: {e}"))?;
    WriteRequest::decode(&*raw)
        .map(|r| r.timeseries)
        .map_err(|e| format!("protobuf: {e}"))
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let decoded = base64_decode(value.strip_prefix("Basic ")?)?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Standard base64 with padding (enough for a Basic credential).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// === impl Script ===

impl Script {
    /// The status (0 = never answer), `Retry-After` seconds and body for request `n`, which
    /// holds `samples` samples.
    fn answer(&self, n: usize, samples: usize) -> (u16, Option<u64>, String) {
        let (status, retry_after) = match self {
            Script::Always(status) => (*status, None),
            Script::Sequence(statuses) => (statuses.get(n).copied().unwrap_or(204), None),
            Script::FailFirst { status, n: first } if n < *first => (*status, None),
            Script::RetryAfter429 { secs, n: first } if n < *first => (429, Some(*secs)),
            Script::N9eQueueFull { n: first } if n < *first => {
                let text = format!("write queue full, metric count over limit: {}", 1000 + n);
                return (499, None, text);
            }
            Script::MaxSamples(max) if samples > *max => {
                let text = format!("too large: {samples} samples > {max}");
                return (413, None, text);
            }
            Script::FailFirst { .. }
            | Script::RetryAfter429 { .. }
            | Script::N9eQueueFull { .. }
            | Script::MaxSamples(_) => (204, None),
            Script::Hang => (0, None),
        };
        (status, retry_after, format!("scripted {status}"))
    }
}
