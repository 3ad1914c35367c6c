//! A fake Ollama server for tests, faithful to Ollama's wire format
//! (Ollama's `api/types.go` and `server/routes.go`): content types, NDJSON framing, Go field
//! order, `omitempty` zero fields, error shapes, load-only replies and
//! gin's 404/405 pages. There is no real model. Replies are deterministic and
//! controlled by directives written inside the prompt, so tests need no setup calls.
//!
//! # Directives
//! Directives are written as `[[name]]` or `[[name:N]]` anywhere in the prompt text
//! (`prompt` for generate and /v1/completions, the message contents for chat, the
//! inputs for embed). They are removed, each replaced by a space, before the words
//! are counted:
//!
//! | directive | effect |
//! |---|---|
//! | `[[tokens:N]]` | reply with N tokens instead of [`DEFAULT_REPLY_TOKENS`] |
//! | `[[delay:MS]]` | sleep MS ms before each streamed line (before the reply when not streaming, once per line it would have had) |
//! | `[[first_delay:MS]]` | sleep MS ms before the first line only (headers are sent with the first line, as Ollama does) |
//! | `[[error_after:K]]` | stream: after K content lines, send the error line and end the body cleanly, with no done line. K=0: a 500 JSON error instead of a stream. Not streaming: 500 |
//! | `[[cut_after:K]]` | stream: after K content lines, abort the connection in the middle of the chunked body. K=0 or not streaming: close the connection without any response |
//! | `[[hang]]` | send the headers, then nothing, and never finish (not streaming: never answer) |
//! | `[[split]]` | write each line in 3 separate body frames, split mid-JSON, 2 ms apart |
//! | `[[gate]]` | stream: hold the done line (the tail) until the test calls [`FakeOllama::open_gate`], so a test can hold many streams open at once without a clock |
//! | `[[load:MS]]` | `load_duration` = MS ms instead of 2 ms |
//! | `[[nocounts]]` | leave out `prompt_eval_count` and `eval_count` (as Ollama does when they are 0); /v1 usage then reports 0 |
//!
//! K larger than the number of reply tokens means "after the last content line, before the done line".
//!
//! # Parallel slots
//! [`FakeOllama::set_num_parallel`]`(n)` gives each model `n` slots, as `OLLAMA_NUM_PARALLEL`
//! does: a generation request takes one before it answers and holds it until its reply is sent
//! or its stream ends; beyond `n`, requests wait. As in Ollama (the runner's `Completion` takes
//! the slot after the scheduler's `load_duration` is measured), the wait is in `total_duration`
//! only. Every slot taken is recorded in [`FakeStats::slot_waits`].
//!
//! # Prompt tokens, reply and metrics
//! * prompt tokens = whitespace-separated words of the prompt text once directives are removed
//!   ([`prompt_tokens`]). For chat the prompt text is the message contents joined with `"\n"`
//!   ([`chat_prompt`]).
//! * the reply is [`reply_tokens`]: words of [`REPLY_WORDS`] (cycled), the first bare and the
//!   others with a leading space. `options.num_predict` (native) or `max_tokens` (/v1) smaller than
//!   that truncates it, with `done_reason`/`finish_reason` `"length"`.
//! * `load_duration` = 2 ms, `prompt_eval_duration` = 1 ms per prompt token,
//!   `eval_duration` = 10 ms per reply token, `total_duration` = their sum + 1 ms ([`expected_metrics`]).
//!
//! # Stats
//! [`FakeStats`] records what the fake saw and said. `prompt_tokens_sent` and `eval_tokens_sent`
//! add up the token counts that actually went on the wire: `prompt_eval_count`/`eval_count` of
//! native final objects, `prompt_eval_count` of /api/embed, and the `usage` of /v1 replies (only
//! when a usage object with real counts was sent, e.g. a /v1 stream only with
//! `stream_options.include_usage`). They are added before the final line is handed to the
//! connection (and taken back if the client is gone), so a client that has read the final line
//! always sees them. `disconnects` counts requests whose client went away before the fake had
//! finished answering; it is updated asynchronously, so poll it with [`FakeOllama::wait_until`].
//!
//! # Files
//! * `mod.rs`: the server ([`FakeOllama`], [`FakeStats`]), connections and routing.
//! * `directives.rs`: directives, reply tokens, expected metrics (pure, used by the tests too).
//! * `generation.rs`: what the four generation endpoints share (request checks, the answer).
//! * `stream.rs`: the shared core that applies the timing and fault directives to the lines of
//!   an answer, streamed or whole.
//! * `native.rs`: /api/generate, /api/chat, /api/embed, /api/embeddings.
//! * `openai.rs`: /v1/chat/completions, /v1/completions, /v1/embeddings.
//! * `catalogue.rs`: /api/version, /api/tags, /api/ps, /api/show, /api/delete, /api/pull,
//!   /api/blobs, /v1/models.
//! * `http.rs`: the response body, content types, error replies, request fields.
//! * `gojson.rs`: Go-ordered JSON, Go timestamps, gin's bind errors.

#![allow(dead_code)]

#[macro_use]
mod gojson;
mod catalogue;
mod directives;
mod generation;
mod http;
mod native;
mod openai;
mod stream;

// The public API, reachable at `fake_ollama::...` as when this was one file. Each user (a test
// crate, the example) uses only part of it.
#[allow(unused_imports)]
pub use catalogue::{is_known_model, KNOWN_MODELS, MODIFIED_UNIX, PULL_ERROR, VERSION};
#[allow(unused_imports)]
pub use directives::{
    chat_prompt, expected_metrics, make_reply_tokens, parse_directives, prompt_tokens, reply_text,
    reply_tokens, Directives, ExpectedMetrics, DEFAULT_LOAD_NS, DEFAULT_REPLY_TOKENS,
    EVAL_NS_PER_TOKEN, MODEL_ERROR, PROMPT_NS_PER_TOKEN, REPLY_WORDS, TOTAL_EXTRA_NS,
};
#[allow(unused_imports)]
pub use gojson::rfc3339_nano;
#[allow(unused_imports)]
pub use http::FakeBody;

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use http::{full, method_not_allowed, not_found, Resp, CT_TEXT};

type BoxError = Box<dyn StdError + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

/// How many entries `host_headers` and `paths` keep (the most recent ones).
pub const STATS_HISTORY: usize = 1000;

/// What the fake has seen and said, for exact assertions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeStats {
    /// Every HTTP request received (counted when its head has been read).
    pub requests: u64,
    /// `Host` header of each request, in order ("" if absent); the last [`STATS_HISTORY`].
    pub host_headers: Vec<String>,
    /// `METHOD path?query` of each request, in order; the last [`STATS_HISTORY`].
    pub paths: Vec<String>,
    /// Sum of the prompt token counts the fake put on the wire (see the module docs).
    pub prompt_tokens_sent: u64,
    /// Sum of the reply token counts the fake put on the wire.
    pub eval_tokens_sent: u64,
    /// Requests whose client went away before the fake had finished answering.
    pub disconnects: u64,
    /// Total request body bytes received.
    pub bodies_bytes: u64,
    /// With [`FakeOllama::set_num_parallel`]: every slot taken, in the order taken.
    pub slot_waits: Vec<SlotWait>,
}

/// One generation request's wait for a parallel slot of its model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotWait {
    pub model: String,
    /// From the request's arrival at the slot to taking it (added to `total_duration`).
    pub waited: Duration,
    /// When it took the slot, from the fake's start.
    pub taken_at: Duration,
}

fn push_bounded(v: &mut Vec<String>, s: String) {
    v.push(s);
    if v.len() > STATS_HISTORY {
        let extra = v.len() - STATS_HISTORY;
        v.drain(..extra);
    }
}

/// State shared by the accept loop, every connection and every stream task.
struct Inner {
    stats: Mutex<FakeStats>,
    blobs: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Open (`true`) once [`FakeOllama::open_gate`] is called: `[[gate]]` streams end then.
    gate: watch::Sender<bool>,
    /// Parallel slots per model (Ollama's `OLLAMA_NUM_PARALLEL`); 0 = unlimited.
    num_parallel: AtomicUsize,
    /// Each model's slots, made on its first request.
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    started: Instant,
}

impl Inner {
    fn with_stats<R>(&self, f: impl FnOnce(&mut FakeStats) -> R) -> R {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn gone(&self) {
        if !self.shutting_down() {
            self.with_stats(|s| s.disconnects += 1);
        }
    }

    fn credit(&self, p: u64, e: u64) {
        self.with_stats(|s| {
            s.prompt_tokens_sent += p;
            s.eval_tokens_sent += e;
        });
    }

    fn uncredit(&self, p: u64, e: u64) {
        self.with_stats(|s| {
            s.prompt_tokens_sent = s.prompt_tokens_sent.saturating_sub(p);
            s.eval_tokens_sent = s.eval_tokens_sent.saturating_sub(e);
        });
    }

    /// Takes one of `model`'s parallel slots, waiting while all are busy, and records the
    /// wait; `None` (at once) when slots are unlimited.
    async fn take_slot(&self, model: &str) -> Option<(OwnedSemaphorePermit, Duration)> {
        let n = self.num_parallel.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let key = if model.contains(':') {
            model.to_owned()
        } else {
            format!("{model}:latest")
        };
        let sem = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(n)))
                .clone()
        };
        let arrived = Instant::now();
        let permit = sem.acquire_owned().await.ok()?;
        let taken = Instant::now();
        let waited = taken - arrived;
        self.with_stats(|s| {
            s.slot_waits.push(SlotWait {
                model: key,
                waited,
                taken_at: taken - self.started,
            })
        });
        Some((permit, waited))
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) % 999
    }
}

// ---------------------------------------------------------------------------------------------
// Server handle
// ---------------------------------------------------------------------------------------------

/// A running fake Ollama. Dropping it (or [`FakeOllama::stop`]) closes the listener and every
/// connection.
pub struct FakeOllama {
    /// The address it listens on.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeOllama {
    /// Binds 127.0.0.1:0 and serves in a background task of the current tokio runtime.
    pub async fn start() -> FakeOllama {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fake ollama: bind 127.0.0.1:0")
    }

    /// Binds `addr` (e.g. the address of a stopped fake, to bring it back) and serves.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeOllama> {
        Self::serve(TcpListener::bind(addr).await?)
    }

    /// Serves on `listener` (one bound beforehand, so nothing can take its port meanwhile).
    pub fn serve(listener: TcpListener) -> std::io::Result<FakeOllama> {
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            stats: Mutex::new(FakeStats::default()),
            blobs: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(0),
            shutdown: rx.clone(),
            gate: watch::channel(false).0,
            num_parallel: AtomicUsize::new(0),
            slots: Mutex::new(HashMap::new()),
            started: Instant::now(),
        });
        let accept = tokio::spawn(accept_loop(listener, inner.clone(), rx));
        Ok(FakeOllama {
            addr,
            inner,
            shutdown: tx,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the stats.
    pub fn stats(&self) -> FakeStats {
        self.inner.with_stats(|s| s.clone())
    }

    /// Lets every `[[gate]]` stream (held before its done line) finish, now and from now on.
    pub fn open_gate(&self) {
        self.inner.gate.send_replace(true);
    }

    /// Gives every model `n` parallel slots from now on (Ollama's `OLLAMA_NUM_PARALLEL`; 0, the
    /// default, is unlimited): a generation request beyond them waits for one, and that wait is
    /// in its `total_duration` (not in `load_duration`), as in Ollama. Each wait is recorded in
    /// [`FakeStats::slot_waits`].
    pub fn set_num_parallel(&self, n: usize) {
        self.inner.num_parallel.store(n, Ordering::Relaxed);
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Zeroes the stats.
    pub fn reset_stats(&self) {
        self.inner.with_stats(|s| *s = FakeStats::default());
    }

    /// Polls the stats every 10 ms until `pred` holds and returns them; panics after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&FakeStats) -> bool,
    ) -> FakeStats {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("fake ollama: condition not met within {timeout:?}; stats: {s:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops listening and closes every connection (streams in flight are cut). Returns once the
    /// port is free, so `FakeOllama::start_on(addr)` can bring the server back.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(h) = self.accept.take() {
            let _ = h.await;
        }
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, rx: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let stop = wait_shutdown(rx);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            res = listener.accept() => match res {
                Ok((stream, _)) => {
                    conns.spawn(serve_conn(stream, inner.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_conn(stream: TcpStream, inner: Arc<Inner>) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req| handle(inner.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Resp, BoxError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    inner.with_stats(|s| {
        s.requests += 1;
        push_bounded(&mut s.host_headers, host);
        push_bounded(&mut s.paths, format!("{method} {pq}"));
    });

    // Blob uploads are counted as they stream in, never buffered.
    if let Some(digest) = path.strip_prefix("/api/blobs/") {
        if !digest.is_empty() && !digest.contains('/') {
            return catalogue::blob(&inner, &method, digest, req.into_body()).await;
        }
    }

    let body = read_body(&inner, req.into_body(), true).await?;
    let m = &method;
    let resp = match path.as_str() {
        "/" => match *m {
            Method::GET | Method::HEAD => full(StatusCode::OK, Some(CT_TEXT), "Ollama is running"),
            _ => method_not_allowed(),
        },
        "/api/version" => match *m {
            Method::GET | Method::HEAD => catalogue::version(),
            _ => method_not_allowed(),
        },
        "/api/tags" => match *m {
            Method::GET | Method::HEAD => catalogue::tags(),
            _ => method_not_allowed(),
        },
        "/api/ps" => only(m, Method::GET, catalogue::ps)?,
        "/api/show" => only(m, Method::POST, || catalogue::show(&body))?,
        "/api/delete" => only(m, Method::DELETE, || catalogue::delete(&body))?,
        "/api/embed" => only_async(m, Method::POST, native::embed(&inner, &body)).await?,
        "/api/embeddings" => only_async(m, Method::POST, native::embeddings(&inner, &body)).await?,
        "/v1/embeddings" => only_async(m, Method::POST, openai::embeddings(&inner, &body)).await?,
        "/api/pull" => only_async(m, Method::POST, catalogue::pull(&inner, &body)).await?,
        "/api/generate" => only_async(m, Method::POST, native::generate(&inner, &body)).await?,
        "/api/chat" => only_async(m, Method::POST, native::chat(&inner, &body)).await?,
        "/v1/chat/completions" => {
            only_async(m, Method::POST, openai::chat_completions(&inner, &body)).await?
        }
        "/v1/completions" => {
            only_async(m, Method::POST, openai::completions(&inner, &body)).await?
        }
        "/v1/models" => only(m, Method::GET, catalogue::v1_models)?,
        p => match p.strip_prefix("/v1/models/") {
            Some(name) if !name.is_empty() && !name.contains('/') => {
                only(m, Method::GET, || catalogue::v1_model(name))?
            }
            _ => not_found(),
        },
    };
    Ok(resp)
}

fn only(m: &Method, want: Method, f: impl FnOnce() -> Resp) -> Result<Resp, BoxError> {
    Ok(if *m == want {
        f()
    } else {
        method_not_allowed()
    })
}

async fn only_async(
    m: &Method,
    want: Method,
    f: impl std::future::Future<Output = Result<Resp, BoxError>>,
) -> Result<Resp, BoxError> {
    if *m == want {
        f.await
    } else {
        Ok(method_not_allowed())
    }
}

/// Reads the request body frame by frame, counting its bytes; keeps them only if `keep`.
async fn read_body(inner: &Inner, mut body: Incoming, keep: bool) -> Result<Bytes, BoxError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(d) = frame.data_ref() {
            inner.with_stats(|s| s.bodies_bytes += d.len() as u64);
            if keep {
                buf.extend_from_slice(d);
            }
        }
    }
    Ok(Bytes::from(buf))
}
