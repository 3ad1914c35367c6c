//! A fake Ollama server for tests, faithful to Ollama's wire format
//! (see shared/research/ollama-api.md): content types, NDJSON framing, Go field
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
//! | `[[load:MS]]` | `load_duration` = MS ms instead of 2 ms |
//! | `[[nocounts]]` | leave out `prompt_eval_count` and `eval_count` (as Ollama does when they are 0); /v1 usage then reports 0 |
//!
//! K larger than the number of reply tokens means "after the last content line, before the done line".
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

#![allow(dead_code)]

use std::collections::HashSet;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

type BoxError = Box<dyn StdError + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Public constants and pure helpers
// ---------------------------------------------------------------------------------------------

/// Version reported by `GET /api/version`.
pub const VERSION: &str = "0.12.6";
/// Reply length when no `[[tokens:N]]` directive is given.
pub const DEFAULT_REPLY_TOKENS: usize = 5;
/// Words the reply is made of, cycled: token i is `REPLY_WORDS[i % len]`, with a leading space for i > 0.
pub const REPLY_WORDS: &[&str] = &[
    "The",
    "sky",
    "is",
    "blue",
    "because",
    "sunlight",
    "is",
    "scattered",
    "by",
    "the",
    "air",
    "and",
    "blue",
    "light",
    "scatters",
    "more",
    "than",
    "red",
    "light.",
];
/// Default `load_duration` (ns).
pub const DEFAULT_LOAD_NS: u64 = 2_000_000;
/// `prompt_eval_duration` per prompt token (ns).
pub const PROMPT_NS_PER_TOKEN: u64 = 1_000_000;
/// `eval_duration` per reply token (ns).
pub const EVAL_NS_PER_TOKEN: u64 = 10_000_000;
/// Added to the other durations to make `total_duration` (ns).
pub const TOTAL_EXTRA_NS: u64 = 1_000_000;
/// Message of the error line / 500 produced by `[[error_after:K]]`.
pub const MODEL_ERROR: &str = "an error was encountered while running the model";
/// Names (as listed by /api/tags) of the models the fake has. Any name starting with `test-` is also known.
pub const KNOWN_MODELS: &[&str] = &[
    "llama3.2:latest",
    "qwen2.5:0.5b",
    "gemma3:1b",
    "nomic-embed-text:latest",
];
/// Error message of a pull of an unknown model (sent as an error line after `pulling manifest`).
pub const PULL_ERROR: &str = "pull model manifest: file does not exist";

/// Prompt directives, see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub tokens: Option<usize>,
    pub delay_ms: u64,
    pub first_delay_ms: u64,
    pub error_after: Option<usize>,
    pub cut_after: Option<usize>,
    pub hang: bool,
    pub split: bool,
    pub load_ms: Option<u64>,
    pub nocounts: bool,
}

/// Splits the directives out of `text`. Returns them and the text with each directive replaced by
/// a space. Unknown `[[...]]` and directives with a bad number are left in the text.
pub fn parse_directives(text: &str) -> (Directives, String) {
    let mut d = Directives::default();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("]]") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        if apply_directive(&mut d, inner) {
            out.push(' ');
            rest = &after[end + 2..];
        } else {
            out.push_str("[[");
            rest = after;
        }
    }
    out.push_str(rest);
    (d, out)
}

fn apply_directive(d: &mut Directives, inner: &str) -> bool {
    let (name, value) = match inner.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (inner.trim(), None),
    };
    let num = || value.and_then(|v| v.parse::<u64>().ok());
    match (name, value) {
        ("hang", None) => d.hang = true,
        ("split", None) => d.split = true,
        ("nocounts", None) => d.nocounts = true,
        ("tokens", Some(_)) => match num() {
            Some(n) => d.tokens = Some(n as usize),
            None => return false,
        },
        ("delay", Some(_)) => match num() {
            Some(n) => d.delay_ms = n,
            None => return false,
        },
        ("first_delay", Some(_)) => match num() {
            Some(n) => d.first_delay_ms = n,
            None => return false,
        },
        ("error_after", Some(_)) => match num() {
            Some(n) => d.error_after = Some(n as usize),
            None => return false,
        },
        ("cut_after", Some(_)) => match num() {
            Some(n) => d.cut_after = Some(n as usize),
            None => return false,
        },
        ("load", Some(_)) => match num() {
            Some(n) => d.load_ms = Some(n),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// Number of prompt tokens the fake reports for `text`: its whitespace-separated words once the
/// directives are removed.
pub fn prompt_tokens(text: &str) -> u64 {
    parse_directives(text).1.split_whitespace().count() as u64
}

/// The prompt text of a chat request: the message contents joined with `"\n"`.
pub fn chat_prompt(contents: &[&str]) -> String {
    contents.join("\n")
}

/// The first `n` reply tokens.
pub fn make_reply_tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let w = REPLY_WORDS[i % REPLY_WORDS.len()];
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// The tokens the fake replies with to `prompt` (before any `num_predict`/`max_tokens` truncation).
pub fn reply_tokens(prompt: &str) -> Vec<String> {
    let (d, _) = parse_directives(prompt);
    make_reply_tokens(d.tokens.unwrap_or(DEFAULT_REPLY_TOKENS))
}

/// The full reply text (concatenated [`reply_tokens`]).
pub fn reply_text(prompt: &str) -> String {
    reply_tokens(prompt).concat()
}

/// Metrics of a final object. A count of `None` is omitted from the JSON, as is any zero duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectedMetrics {
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: Option<u64>,
    pub prompt_eval_duration: u64,
    pub eval_count: Option<u64>,
    pub eval_duration: u64,
}

/// Metrics the fake puts in the final object for `prompt_text` (the generate prompt or the
/// [`chat_prompt`]), given the request's `num_predict`/`max_tokens` if any.
pub fn expected_metrics(prompt_text: &str, num_predict: Option<i64>) -> ExpectedMetrics {
    let (d, clean) = parse_directives(prompt_text);
    let p = clean.split_whitespace().count() as u64;
    let (n, _) = truncate(d.tokens.unwrap_or(DEFAULT_REPLY_TOKENS), num_predict);
    metrics_for(&d, p, n as u64)
}

fn truncate(n: usize, num_predict: Option<i64>) -> (usize, &'static str) {
    match num_predict {
        Some(np) if np > 0 && (np as u64) < n as u64 => (np as usize, "length"),
        _ => (n, "stop"),
    }
}

fn metrics_for(d: &Directives, p: u64, e: u64) -> ExpectedMetrics {
    let load = d
        .load_ms
        .map(|ms| ms * 1_000_000)
        .unwrap_or(DEFAULT_LOAD_NS);
    let pd = PROMPT_NS_PER_TOKEN * p;
    let ed = EVAL_NS_PER_TOKEN * e;
    let nz = |v: u64| if v == 0 || d.nocounts { None } else { Some(v) };
    ExpectedMetrics {
        total_duration: load + pd + ed + TOTAL_EXTRA_NS,
        load_duration: load,
        prompt_eval_count: nz(p),
        prompt_eval_duration: pd,
        eval_count: nz(e),
        eval_duration: ed,
    }
}

/// Whether the fake knows model `name` (the names of [`KNOWN_MODELS`], with or without
/// `:latest`, and anything starting with `test-`).
pub fn is_known_model(name: &str) -> bool {
    if name.starts_with("test-") {
        return true;
    }
    KNOWN_MODELS
        .iter()
        .any(|m| *m == name || m.strip_suffix(":latest") == Some(name))
}

/// `created_at`-style timestamp: RFC 3339 with up to 9 fraction digits (trailing zeros trimmed), UTC `Z`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let nanos = d.subsec_nanos();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, dd) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if nanos > 0 {
        let mut f = format!("{nanos:09}");
        while f.ends_with('0') {
            f.pop();
        }
        s.push('.');
        s.push_str(&f);
    }
    s.push('Z');
    s
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Ordered JSON (Go field order), with Go's HTML escaping
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f32),
    S(String),
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
}

impl From<bool> for J {
    fn from(v: bool) -> J {
        J::Bool(v)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> J {
        J::U(v)
    }
}
impl From<usize> for J {
    fn from(v: usize) -> J {
        J::U(v as u64)
    }
}
impl From<i64> for J {
    fn from(v: i64) -> J {
        J::I(v)
    }
}
impl From<f32> for J {
    fn from(v: f32) -> J {
        J::F(v)
    }
}
impl From<&str> for J {
    fn from(v: &str) -> J {
        J::S(v.to_string())
    }
}
impl From<String> for J {
    fn from(v: String) -> J {
        J::S(v)
    }
}
impl From<&String> for J {
    fn from(v: &String) -> J {
        J::S(v.clone())
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> J {
        J::A(v)
    }
}

impl serde::Serialize for J {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::U(n) => s.serialize_u64(*n),
            J::I(n) => s.serialize_i64(*n),
            J::F(f) => s.serialize_f32(*f),
            J::S(x) => s.serialize_str(x),
            J::A(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            J::O(v) => {
                let mut m = s.serialize_map(Some(v.len()))?;
                for (k, x) in v {
                    m.serialize_entry(k, x)?;
                }
                m.end()
            }
        }
    }
}

macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {
        J::O(vec![$(($k, J::from($v))),*])
    };
}

impl J {
    /// Go's `encoding/json` output: compact, and `<`, `>`, `&`, U+2028, U+2029 escaped.
    fn go(&self) -> String {
        let s = serde_json::to_string(self).expect("serialize");
        if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            return s;
        }
        let mut out = String::with_capacity(s.len() + 16);
        for c in s.chars() {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        out
    }

    fn push(&mut self, k: &'static str, v: impl Into<J>) {
        if let J::O(o) = self {
            o.push((k, v.into()));
        }
    }

    fn push_nz(&mut self, k: &'static str, v: u64) {
        if v != 0 {
            self.push(k, v);
        }
    }

    fn push_metrics(&mut self, m: &ExpectedMetrics) {
        self.push_nz("total_duration", m.total_duration);
        self.push_nz("load_duration", m.load_duration);
        self.push_nz("prompt_eval_count", m.prompt_eval_count.unwrap_or(0));
        self.push_nz("prompt_eval_duration", m.prompt_eval_duration);
        self.push_nz("eval_count", m.eval_count.unwrap_or(0));
        self.push_nz("eval_duration", m.eval_duration);
    }
}

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
}

fn push_bounded(v: &mut Vec<String>, s: String) {
    v.push(s);
    if v.len() > STATS_HISTORY {
        let extra = v.len() - STATS_HISTORY;
        v.drain(..extra);
    }
}

struct Inner {
    stats: Mutex<FakeStats>,
    blobs: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
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
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            stats: Mutex::new(FakeStats::default()),
            blobs: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(0),
            shutdown: rx.clone(),
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
// Body
// ---------------------------------------------------------------------------------------------

enum Msg {
    /// One body frame.
    Data(Bytes),
    /// Send the headers now, without data (`[[hang]]`).
    Start,
    /// Abort the connection.
    Cut,
    /// An error before anything was written: a normal error response.
    EarlyError(StatusCode, &'static str, Bytes),
}

/// Response body of the fake: either a complete buffer, or frames from a channel (streams).
pub struct FakeBody(BodyKind);

enum BodyKind {
    Full(Option<Bytes>),
    Chan {
        first: Option<Bytes>,
        rx: mpsc::Receiver<Msg>,
    },
}

impl FakeBody {
    fn full(b: impl Into<Bytes>) -> FakeBody {
        let b: Bytes = b.into();
        FakeBody(BodyKind::Full(if b.is_empty() { None } else { Some(b) }))
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Chan { first, rx } => {
                if let Some(b) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                loop {
                    return match rx.poll_recv(cx) {
                        Poll::Ready(Some(Msg::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                        Poll::Ready(Some(Msg::Start)) => continue,
                        Poll::Ready(Some(Msg::Cut)) | Poll::Ready(Some(Msg::EarlyError(..))) => {
                            Poll::Ready(Some(Err("fake ollama: connection cut".into())))
                        }
                        Poll::Ready(None) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, BodyKind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            BodyKind::Full(None) => SizeHint::with_exact(0),
            BodyKind::Chan { .. } => SizeHint::default(),
        }
    }
}

type Resp = Response<FakeBody>;

const CT_JSON: &str = "application/json; charset=utf-8";
const CT_JSON_BARE: &str = "application/json";
const CT_NDJSON: &str = "application/x-ndjson";
const CT_SSE: &str = "text/event-stream";
const CT_TEXT: &str = "text/plain; charset=utf-8";
const CT_GIN_TEXT: &str = "text/plain";

fn full(status: StatusCode, ct: Option<&'static str>, body: impl Into<Bytes>) -> Resp {
    let mut b = Response::builder().status(status);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(FakeBody::full(body)).expect("response")
}

fn json_ok(j: &J) -> Resp {
    full(StatusCode::OK, Some(CT_JSON), j.go())
}

/// Native error: `{"error":"msg"}`, `application/json; charset=utf-8`.
fn native_err(status: StatusCode, msg: &str) -> Resp {
    full(status, Some(CT_JSON), obj! {"error" => msg}.go())
}

fn oai_error_json(status: StatusCode, msg: &str) -> J {
    let t = match status {
        StatusCode::BAD_REQUEST => "invalid_request_error",
        StatusCode::NOT_FOUND => "not_found_error",
        _ => "api_error",
    };
    obj! {"error" => obj!{"message" => msg, "type" => t, "param" => J::Null, "code" => J::Null}}
}

/// OpenAI-shape error. `from_middleware`: written by the middleware itself (gin's content type,
/// no newline) rather than converted from the handler's error (json.Encoder: bare type, newline).
fn oai_err(status: StatusCode, msg: &str, from_middleware: bool) -> Resp {
    let j = oai_error_json(status, msg);
    if from_middleware {
        full(status, Some(CT_JSON), j.go())
    } else {
        full(status, Some(CT_JSON_BARE), j.go() + "\n")
    }
}

/// /v1 success reply (json.Encoder: trailing newline, bare `application/json`).
fn oai_ok(j: &J) -> Resp {
    full(StatusCode::OK, Some(CT_JSON_BARE), j.go() + "\n")
}

fn not_found() -> Resp {
    full(
        StatusCode::NOT_FOUND,
        Some(CT_GIN_TEXT),
        "404 page not found",
    )
}

fn method_not_allowed() -> Resp {
    full(
        StatusCode::METHOD_NOT_ALLOWED,
        Some(CT_GIN_TEXT),
        "405 method not allowed",
    )
}

// ---------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------

enum BindErr {
    /// Empty (or whitespace-only) body: Go's `io.EOF`.
    Missing,
    Msg(String),
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses a request body as gin's `ShouldBindJSON` into Go struct `go_type` would, checking the
/// type of the fields in `fields` (`(name, "string"|"bool"|"array"|"object")`).
fn bind(
    body: &[u8],
    go_type: &str,
    fields: &[(&str, &str)],
) -> Result<Map<String, Value>, BindErr> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BindErr::Missing);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| BindErr::Msg(go_json_error(body, &e)))?;
    let map = match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(BindErr::Msg(format!(
                "json: cannot unmarshal {} into Go value of type {go_type}",
                json_kind(&other)
            )))
        }
    };
    let short = go_type.rsplit('.').next().unwrap_or(go_type);
    for (name, want) in fields {
        if let Some(v) = map.get(*name) {
            let got = json_kind(v);
            if got != "null" && got != *want {
                let go_want = match *want {
                    "array" => "[]",
                    "object" => "map",
                    w => w,
                };
                return Err(BindErr::Msg(format!(
                    "json: cannot unmarshal {got} into Go struct field {short}.{name} of type {go_want}"
                )));
            }
        }
    }
    Ok(map)
}

fn go_json_error(body: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() || e.is_io() {
        return "unexpected EOF".to_string();
    }
    // Find the offending character from serde's 1-based line/column.
    let text = String::from_utf8_lossy(body);
    let c = text
        .split('\n')
        .nth(e.line().saturating_sub(1))
        .and_then(|l| l.chars().nth(e.column().saturating_sub(1)))
        .unwrap_or('?');
    let msg = e.to_string();
    let what = if msg.contains("trailing characters") {
        "after top-level value"
    } else if msg.contains("key must be a string") {
        "looking for beginning of object key string"
    } else {
        "looking for beginning of value"
    };
    format!("invalid character '{c}' {what}")
}

fn get_str<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Model name from `model`, or the deprecated `name`.
fn model_field(m: &Map<String, Value>) -> &str {
    let s = get_str(m, "model");
    if s.is_empty() {
        get_str(m, "name")
    } else {
        s
    }
}

fn keep_alive_zero(m: &Map<String, Value>) -> bool {
    match m.get("keep_alive") {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => {
            let num = s.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == 'µ');
            !num.is_empty() && num.parse::<f64>().ok() == Some(0.0)
        }
        _ => false,
    }
}

fn num_predict(m: &Map<String, Value>) -> Option<i64> {
    m.get("options")
        .and_then(|o| o.get("num_predict"))
        .and_then(Value::as_i64)
}

// ---------------------------------------------------------------------------------------------
// Handler and routes
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
            let digest = digest.to_string();
            return match method {
                Method::HEAD => {
                    let _ = read_body(&inner, req.into_body(), false).await?;
                    let known = inner.blobs.lock().unwrap().contains(&digest);
                    Ok(if known {
                        full(StatusCode::OK, None, Bytes::new())
                    } else {
                        native_err(StatusCode::NOT_FOUND, &format!("blob {digest:?} not found"))
                    })
                }
                Method::POST => {
                    let _ = read_body(&inner, req.into_body(), false).await?;
                    let new = inner.blobs.lock().unwrap().insert(digest);
                    let status = if new {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    Ok(full(status, None, Bytes::new()))
                }
                _ => Ok(method_not_allowed()),
            };
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
            Method::GET | Method::HEAD => json_ok(&obj! {"version" => VERSION}),
            _ => method_not_allowed(),
        },
        "/api/tags" => match *m {
            Method::GET | Method::HEAD => json_ok(&tags_json()),
            _ => method_not_allowed(),
        },
        "/api/ps" => only(m, Method::GET, || json_ok(&ps_json()))?,
        "/api/show" => only(m, Method::POST, || show(&body))?,
        "/api/delete" => only(m, Method::DELETE, || delete(&body))?,
        "/api/embed" => only_async(m, Method::POST, embed(&inner, &body, EmbedApi::Native)).await?,
        "/api/embeddings" => {
            only_async(m, Method::POST, embed(&inner, &body, EmbedApi::Legacy)).await?
        }
        "/v1/embeddings" => {
            only_async(m, Method::POST, embed(&inner, &body, EmbedApi::OpenAi)).await?
        }
        "/api/pull" => only_async(m, Method::POST, pull(&inner, &body)).await?,
        "/api/generate" => {
            only_async(m, Method::POST, generate(&inner, &body, Api::Generate)).await?
        }
        "/api/chat" => only_async(m, Method::POST, generate(&inner, &body, Api::Chat)).await?,
        "/v1/chat/completions" => {
            only_async(m, Method::POST, generate(&inner, &body, Api::OaiChat)).await?
        }
        "/v1/completions" => {
            only_async(m, Method::POST, generate(&inner, &body, Api::OaiCompletion)).await?
        }
        "/v1/models" => only(m, Method::GET, || oai_ok(&v1_models_json()))?,
        p => match p.strip_prefix("/v1/models/") {
            Some(name) if !name.is_empty() && !name.contains('/') => {
                only(m, Method::GET, || v1_model(name))?
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

// ----- static catalog -----

struct ModelInfo {
    name: &'static str,
    family: &'static str,
    parameter_size: &'static str,
    quantization: &'static str,
    format: &'static str,
    size: u64,
    digest: &'static str,
    embedding: bool,
}

const CATALOG: &[ModelInfo] = &[
    ModelInfo {
        name: "llama3.2:latest",
        family: "llama",
        parameter_size: "3.2B",
        quantization: "Q4_K_M",
        format: "gguf",
        size: 2_019_393_189,
        digest: "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        embedding: false,
    },
    ModelInfo {
        name: "qwen2.5:0.5b",
        family: "qwen2",
        parameter_size: "494.03M",
        quantization: "Q4_K_M",
        format: "gguf",
        size: 397_821_319,
        digest: "a8b0c51577010a279d933d14c2a8ab4b268079d44c5c8830c0a93900f1827c67",
        embedding: false,
    },
    ModelInfo {
        name: "gemma3:1b",
        family: "gemma3",
        parameter_size: "999.89M",
        quantization: "Q4_K_M",
        format: "gguf",
        size: 815_319_791,
        digest: "8648f39daa8fbf5b18c7b4e6a8fb4990c692751d49917417b8842ca5758e7ffc",
        embedding: false,
    },
    ModelInfo {
        name: "nomic-embed-text:latest",
        family: "nomic-bert",
        parameter_size: "137M",
        quantization: "F16",
        format: "gguf",
        size: 274_302_450,
        digest: "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        embedding: true,
    },
];

/// Unix time all catalog models were "modified" at (2025-10-01T12:00:00Z).
pub const MODIFIED_UNIX: i64 = 1_759_320_000;
const MODIFIED_AT: &str = "2025-10-01T12:00:00.123456789Z";

fn details_json(mi: &ModelInfo) -> J {
    obj! {
        "parent_model" => "",
        "format" => mi.format,
        "family" => mi.family,
        "families" => vec![J::from(mi.family)],
        "parameter_size" => mi.parameter_size,
        "quantization_level" => mi.quantization,
    }
}

fn catalog_entry(name: &str) -> &'static ModelInfo {
    CATALOG
        .iter()
        .find(|m| m.name == name || m.name.strip_suffix(":latest") == Some(name))
        .unwrap_or(&CATALOG[0])
}

fn tags_json() -> J {
    let models = CATALOG
        .iter()
        .map(|mi| {
            obj! {
                "name" => mi.name,
                "model" => mi.name,
                "modified_at" => MODIFIED_AT,
                "size" => mi.size,
                "digest" => mi.digest,
                "details" => details_json(mi),
            }
        })
        .collect::<Vec<_>>();
    obj! {"models" => models}
}

fn ps_json() -> J {
    let mi = &CATALOG[0];
    let expires = rfc3339_nano(SystemTime::now() + Duration::from_secs(299));
    obj! {"models" => vec![obj! {
        "name" => mi.name,
        "model" => mi.name,
        "size" => 3_325_000_000u64,
        "digest" => mi.digest,
        "details" => details_json(mi),
        "expires_at" => expires,
        "size_vram" => 3_325_000_000u64,
        "context_length" => 4096u64,
    }]}
}

fn v1_models_json() -> J {
    let data = CATALOG
        .iter()
        .map(|mi| {
            obj! {"id" => mi.name, "object" => "model", "created" => MODIFIED_UNIX, "owned_by" => "library"}
        })
        .collect::<Vec<_>>();
    obj! {"object" => "list", "data" => data}
}

fn v1_model(name: &str) -> Resp {
    if !is_known_model(name) {
        return oai_err(
            StatusCode::NOT_FOUND,
            &format!("model '{name}' not found"),
            false,
        );
    }
    oai_ok(
        &obj! {"id" => name, "object" => "model", "created" => MODIFIED_UNIX, "owned_by" => "library"},
    )
}

fn bind_native(
    body: &[u8],
    go_type: &str,
    fields: &[(&str, &str)],
) -> Result<Map<String, Value>, Box<Resp>> {
    bind(body, go_type, fields).map_err(|e| {
        Box::new(match e {
            BindErr::Missing => native_err(StatusCode::BAD_REQUEST, "missing request body"),
            BindErr::Msg(m) => native_err(StatusCode::BAD_REQUEST, &m),
        })
    })
}

fn show(body: &[u8]) -> Resp {
    let req = match bind_native(
        body,
        "api.ShowRequest",
        &[("model", "string"), ("name", "string")],
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let name = model_field(&req);
    if name.is_empty() {
        return native_err(StatusCode::BAD_REQUEST, "model is required");
    }
    if !is_known_model(name) {
        return native_err(StatusCode::NOT_FOUND, &format!("model '{name}' not found"));
    }
    let mi = catalog_entry(name);
    let caps = if mi.embedding {
        vec![J::from("embedding")]
    } else {
        vec![J::from("completion")]
    };
    json_ok(&obj! {
        "modelfile" => format!("# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {name}\n\nFROM /root/.ollama/models/blobs/sha256-{}\nTEMPLATE \"{{{{ .Prompt }}}}\"\nPARAMETER stop <|eot_id|>\n", mi.digest),
        "parameters" => "stop                           \"<|eot_id|>\"",
        "template" => "{{ .Prompt }}",
        "details" => details_json(mi),
        "model_info" => obj! {
            "general.architecture" => mi.family,
            "general.parameter_count" => 3_212_749_888u64,
            "llama.context_length" => 131_072u64,
        },
        "capabilities" => caps,
        "modified_at" => MODIFIED_AT,
    })
}

fn delete(body: &[u8]) -> Resp {
    let req = match bind_native(
        body,
        "api.DeleteRequest",
        &[("model", "string"), ("name", "string")],
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let name = model_field(&req);
    if name.is_empty() {
        return native_err(StatusCode::BAD_REQUEST, "model is required");
    }
    if !is_known_model(name) {
        return native_err(StatusCode::NOT_FOUND, &format!("model '{name}' not found"));
    }
    full(StatusCode::OK, None, Bytes::new())
}

// ----- embeddings -----

#[derive(Clone, Copy, PartialEq, Eq)]
enum EmbedApi {
    /// /api/embed
    Native,
    /// /api/embeddings
    Legacy,
    /// /v1/embeddings
    OpenAi,
}

/// Deterministic embedding of `text` with `dims` dimensions.
fn embedding_of(text: &str, dims: usize) -> Vec<J> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|i| {
            let x =
                h.rotate_left((i * 7 % 64) as u32) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            J::F(((x % 2001) as f32 - 1000.0) / 1000.0)
        })
        .collect()
}

async fn embed(inner: &Inner, body: &[u8], api: EmbedApi) -> Result<Resp, BoxError> {
    let oai = api == EmbedApi::OpenAi;
    let err = |status: StatusCode, msg: &str, mw: bool| {
        if oai {
            oai_err(status, msg, mw)
        } else {
            native_err(status, msg)
        }
    };
    let (go_type, text_field) = match api {
        EmbedApi::Native => ("api.EmbedRequest", "input"),
        EmbedApi::Legacy => ("api.EmbeddingRequest", "prompt"),
        EmbedApi::OpenAi => ("openai.EmbedRequest", "input"),
    };
    let fields: &[(&str, &str)] = if api == EmbedApi::Legacy {
        &[("model", "string"), ("prompt", "string")]
    } else {
        &[("model", "string")]
    };
    let req = match bind(body, go_type, fields) {
        Ok(r) => r,
        Err(BindErr::Missing) if oai => return Ok(err(StatusCode::BAD_REQUEST, "EOF", true)),
        Err(BindErr::Missing) => {
            return Ok(err(StatusCode::BAD_REQUEST, "missing request body", false))
        }
        Err(BindErr::Msg(m)) => return Ok(err(StatusCode::BAD_REQUEST, &m, true)),
    };
    // Inputs.
    let inputs: Vec<String> = match req.get(text_field) {
        Some(Value::String(s)) if s.is_empty() && oai => vec![String::new()],
        Some(Value::String(s)) if s.is_empty() => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if api != EmbedApi::Legacy => {
            if a.is_empty() && oai {
                return Ok(err(StatusCode::BAD_REQUEST, "invalid input", true));
            }
            let mut v = Vec::new();
            for x in a {
                match x {
                    Value::String(s) => v.push(s.clone()),
                    _ => return Ok(err(StatusCode::BAD_REQUEST, "invalid input type", false)),
                }
            }
            v
        }
        None | Some(Value::Null) if oai => {
            return Ok(err(StatusCode::BAD_REQUEST, "invalid input", true))
        }
        None | Some(Value::Null) => vec![],
        Some(_) => return Ok(err(StatusCode::BAD_REQUEST, "invalid input type", false)),
    };
    let model = get_str(&req, "model").to_string();
    if model.is_empty() {
        return Ok(err(StatusCode::BAD_REQUEST, "model is required", false));
    }
    if !is_known_model(&model) {
        return Ok(err(
            StatusCode::NOT_FOUND,
            &format!("model '{model}' not found"),
            false,
        ));
    }
    let dims = req
        .get("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| *d > 0)
        .unwrap_or(8)
        .min(4096) as usize;
    let (d, _) = parse_directives(&inputs.join("\n"));
    let p: u64 = inputs.iter().map(|s| prompt_tokens(s)).sum();

    // Timing directives behave as for a non-streamed generation.
    let guard = GoneGuard::new(inner);
    if d.hang {
        std::future::pending::<()>().await;
    }
    let wait = d.first_delay_ms + d.delay_ms;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    guard.disarm();
    if d.cut_after.is_some() {
        return Err("fake ollama: connection cut".into());
    }
    if d.error_after.is_some() {
        return Ok(err(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR, false));
    }

    let vecs: Vec<J> = inputs.iter().map(|s| J::A(embedding_of(s, dims))).collect();
    let resp = match api {
        EmbedApi::Legacy => {
            let v = inputs
                .first()
                .map(|s| embedding_of(s, dims))
                .unwrap_or_default();
            json_ok(&obj! {"embedding" => v})
        }
        EmbedApi::Native => {
            let mut j = obj! {"model" => &model, "embeddings" => vecs};
            if !inputs.is_empty() {
                let m = metrics_for(&d, p, 0);
                j.push_nz(
                    "total_duration",
                    m.load_duration + m.prompt_eval_duration + TOTAL_EXTRA_NS,
                );
                j.push_nz("load_duration", m.load_duration);
                let pc = m.prompt_eval_count.unwrap_or(0);
                j.push_nz("prompt_eval_count", pc);
                inner.credit(pc, 0);
            }
            json_ok(&j)
        }
        EmbedApi::OpenAi => {
            let pc = if d.nocounts { 0 } else { p };
            let data = vecs
                .into_iter()
                .enumerate()
                .map(|(i, v)| obj! {"object" => "embedding", "embedding" => v, "index" => i})
                .collect::<Vec<_>>();
            inner.credit(pc, 0);
            oai_ok(&obj! {
                "object" => "list",
                "data" => data,
                "model" => &model,
                "usage" => obj!{"prompt_tokens" => pc, "total_tokens" => pc},
            })
        }
    };
    Ok(resp)
}

/// Counts a disconnect if dropped while armed (the request future was dropped by hyper because
/// the client went away).
struct GoneGuard<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl<'a> GoneGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        GoneGuard { inner, armed: true }
    }
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GoneGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.gone();
        }
    }
}

// ----- pull -----

/// Deterministic 64-hex digest for `name`.
fn fake_digest(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(64);
    for round in 0..4u64 {
        for b in name.bytes().chain(round.to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

async fn pull(inner: &Arc<Inner>, body: &[u8]) -> Result<Resp, BoxError> {
    let req = match bind_native(
        body,
        "api.PullRequest",
        &[("model", "string"), ("name", "string"), ("stream", "bool")],
    ) {
        Ok(r) => r,
        Err(r) => return Ok(*r),
    };
    let name = model_field(&req).to_string();
    if name.is_empty() {
        return Ok(native_err(StatusCode::BAD_REQUEST, "model is required"));
    }
    let known = is_known_model(&name);
    if req.get("stream") == Some(&Value::Bool(false)) {
        return Ok(if known {
            json_ok(&obj! {"status" => "success"})
        } else {
            native_err(StatusCode::INTERNAL_SERVER_ERROR, PULL_ERROR)
        });
    }
    let line = |j: J| Bytes::from(j.go() + "\n");
    let mut content = vec![line(obj! {"status" => "pulling manifest"})];
    let mut tail = Vec::new();
    let error_line = line(obj! {"error" => PULL_ERROR});
    let mut d = Directives::default();
    if known {
        let digest = if is_known_model(&name) && !name.starts_with("test-") {
            catalog_entry(&name).digest.to_string()
        } else {
            fake_digest(&name)
        };
        let total: u64 = if name.starts_with("test-") {
            1_000_000
        } else {
            catalog_entry(&name).size
        };
        let status = format!("pulling {}", &digest[..12]);
        let sha = format!("sha256:{digest}");
        for completed in [0, total / 2, total] {
            let mut j = obj! {"status" => &status, "digest" => &sha};
            j.push_nz("total", total);
            j.push_nz("completed", completed);
            content.push(line(j));
        }
        for s in [
            "verifying sha256 digest",
            "writing manifest",
            "removing unused layers",
        ] {
            content.push(line(obj! {"status" => s}));
        }
        tail.push(line(obj! {"status" => "success"}));
    } else {
        d.error_after = Some(1);
    }
    let job = StreamJob {
        content,
        tail,
        credit: None,
        error_line,
        early_error: (CT_JSON, native_err_body(PULL_ERROR)),
        d,
    };
    start_stream(inner, job, CT_NDJSON).await
}

fn native_err_body(msg: &str) -> Bytes {
    Bytes::from(obj! {"error" => msg}.go())
}

// ----- generation -----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Generate,
    Chat,
    OaiChat,
    OaiCompletion,
}

impl Api {
    fn oai(self) -> bool {
        matches!(self, Api::OaiChat | Api::OaiCompletion)
    }
}

async fn generate(inner: &Arc<Inner>, body: &[u8], api: Api) -> Result<Resp, BoxError> {
    let oai = api.oai();
    let err = |status: StatusCode, msg: &str, mw: bool| {
        if oai {
            oai_err(status, msg, mw)
        } else {
            native_err(status, msg)
        }
    };
    let (go_type, fields): (&str, &[(&str, &str)]) = match api {
        Api::Generate => (
            "api.GenerateRequest",
            &[
                ("model", "string"),
                ("prompt", "string"),
                ("stream", "bool"),
                ("options", "object"),
            ],
        ),
        Api::Chat => (
            "api.ChatRequest",
            &[
                ("model", "string"),
                ("messages", "array"),
                ("stream", "bool"),
                ("options", "object"),
            ],
        ),
        Api::OaiChat => (
            "openai.ChatCompletionRequest",
            &[
                ("model", "string"),
                ("messages", "array"),
                ("stream", "bool"),
                ("stream_options", "object"),
            ],
        ),
        Api::OaiCompletion => (
            "openai.CompletionRequest",
            &[
                ("model", "string"),
                ("prompt", "string"),
                ("stream", "bool"),
                ("stream_options", "object"),
            ],
        ),
    };
    let req = match bind(body, go_type, fields) {
        Ok(r) => r,
        Err(BindErr::Missing) if oai => return Ok(err(StatusCode::BAD_REQUEST, "EOF", true)),
        Err(BindErr::Missing) => {
            return Ok(err(StatusCode::BAD_REQUEST, "missing request body", false))
        }
        Err(BindErr::Msg(m)) => return Ok(err(StatusCode::BAD_REQUEST, &m, true)),
    };
    let messages: Option<&Vec<Value>> = req.get("messages").and_then(Value::as_array);
    if api == Api::OaiChat && messages.is_none_or(|m| m.is_empty()) {
        return Ok(err(
            StatusCode::BAD_REQUEST,
            "[] is too short - 'messages'",
            true,
        ));
    }
    let model = get_str(&req, "model").to_string();
    if model.is_empty() {
        return Ok(err(StatusCode::BAD_REQUEST, "model is required", false));
    }
    if !is_known_model(&model) {
        return Ok(err(
            StatusCode::NOT_FOUND,
            &format!("model '{model}' not found"),
            false,
        ));
    }

    let text = match api {
        Api::Generate | Api::OaiCompletion => get_str(&req, "prompt").to_string(),
        Api::Chat | Api::OaiChat => {
            let contents: Vec<&str> = messages
                .map(|ms| ms.iter().map(message_text).collect())
                .unwrap_or_default();
            chat_prompt(&contents)
        }
    };
    let load_only = match api {
        Api::Generate | Api::OaiCompletion => text.is_empty(),
        Api::Chat | Api::OaiChat => messages.is_none_or(|m| m.is_empty()),
    };
    let stream = if oai {
        req.get("stream") == Some(&Value::Bool(true))
    } else {
        req.get("stream") != Some(&Value::Bool(false))
    };
    let created_at = rfc3339_nano(SystemTime::now());

    if load_only && !oai {
        let reason = if keep_alive_zero(&req) {
            "unload"
        } else {
            "load"
        };
        let mut j = obj! {"model" => &model, "created_at" => &created_at};
        push_content(&mut j, api, "");
        j.push("done", true);
        j.push("done_reason", reason);
        return Ok(json_ok(&j));
    }

    let (d, clean) = parse_directives(&text);
    let p = clean.split_whitespace().count() as u64;
    let np = if oai {
        req.get("max_tokens").and_then(Value::as_i64)
    } else {
        num_predict(&req)
    };
    let (n, mut reason) = truncate(d.tokens.unwrap_or(DEFAULT_REPLY_TOKENS), np);
    let mut tokens = make_reply_tokens(n);
    let mut metrics = metrics_for(&d, p, n as u64);
    if load_only {
        // /v1/completions with an empty prompt: the generate handler only loads the model.
        tokens.clear();
        reason = "load";
        metrics = ExpectedMetrics::default();
    }
    let (pc, ec) = (
        metrics.prompt_eval_count.unwrap_or(0),
        metrics.eval_count.unwrap_or(0),
    );
    let raw = req.get("raw") == Some(&Value::Bool(true));

    let final_native = |content: &str| {
        let mut j = obj! {"model" => &model, "created_at" => rfc3339_nano(SystemTime::now())};
        push_content(&mut j, api, content);
        j.push("done", true);
        j.push("done_reason", reason);
        if api == Api::Generate && !raw {
            j.push("context", vec![J::U(1), J::U(2), J::U(3)]);
        }
        j.push_metrics(&metrics);
        j
    };
    let usage = obj! {"prompt_tokens" => pc, "completion_tokens" => ec, "total_tokens" => pc + ec};
    let id = match api {
        Api::OaiChat => format!("chatcmpl-{}", inner.next_id()),
        _ => format!("cmpl-{}", inner.next_id()),
    };
    let created = unix_now();

    if !stream {
        let guard = GoneGuard::new(inner);
        if d.hang {
            std::future::pending::<()>().await;
        }
        let wait = d.first_delay_ms + d.delay_ms * (tokens.len() as u64 + 1);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        guard.disarm();
        if d.cut_after.is_some() {
            return Err("fake ollama: connection cut".into());
        }
        if d.error_after.is_some() {
            return Ok(err(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR, false));
        }
        let text = tokens.concat();
        let resp = match api {
            Api::Generate | Api::Chat => json_ok(&final_native(&text)),
            Api::OaiChat => oai_ok(&obj! {
                "id" => &id,
                "object" => "chat.completion",
                "created" => created,
                "model" => &model,
                "system_fingerprint" => "fp_ollama",
                "choices" => vec![obj! {
                    "index" => 0u64,
                    "message" => obj! {"role" => "assistant", "content" => &text},
                    "finish_reason" => reason,
                }],
                "usage" => usage,
            }),
            Api::OaiCompletion => oai_ok(&obj! {
                "id" => &id,
                "object" => "text_completion",
                "created" => created,
                "model" => &model,
                "system_fingerprint" => "fp_ollama",
                "choices" => vec![obj! {"text" => &text, "index" => 0u64, "finish_reason" => reason}],
                "usage" => usage,
            }),
        };
        inner.credit(pc, ec);
        return Ok(resp);
    }

    // Streams.
    let ndjson = |j: J| Bytes::from(j.go() + "\n");
    let sse = |j: J| Bytes::from(format!("data: {}\n\n", j.go()));
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));
    let zero_usage =
        || obj! {"prompt_tokens" => 0u64, "completion_tokens" => 0u64, "total_tokens" => 0u64};
    type Parts = (
        Vec<Bytes>,
        Vec<Bytes>,
        Option<(usize, u64, u64)>,
        Bytes,
        (&'static str, Bytes),
        &'static str,
    );
    let (content, tail, credit, error_line, early_error, ct): Parts = match api {
        Api::Generate | Api::Chat => {
            let content = tokens
                .iter()
                .map(|t| {
                    let mut j =
                        obj! {"model" => &model, "created_at" => rfc3339_nano(SystemTime::now())};
                    push_content(&mut j, api, t);
                    j.push("done", false);
                    ndjson(j)
                })
                .collect();
            (
                content,
                vec![ndjson(final_native(""))],
                Some((0, pc, ec)),
                ndjson(obj! {"error" => MODEL_ERROR}),
                (CT_JSON_BARE, native_err_body(MODEL_ERROR)),
                CT_NDJSON,
            )
        }
        Api::OaiChat => {
            let chunk = |choices: Vec<J>, usage: Option<J>| {
                let mut j = obj! {
                    "id" => &id,
                    "object" => "chat.completion.chunk",
                    "created" => created,
                    "model" => &model,
                    "system_fingerprint" => "fp_ollama",
                    "choices" => choices,
                };
                if let Some(u) = usage {
                    j.push("usage", u);
                }
                j
            };
            let content = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let delta = if i == 0 {
                        obj! {"role" => "assistant", "content" => t}
                    } else {
                        obj! {"content" => t}
                    };
                    sse(chunk(
                        vec![obj! {"index" => 0u64, "delta" => delta, "finish_reason" => J::Null}],
                        None,
                    ))
                })
                .collect();
            let mut tail = vec![sse(chunk(
                vec![obj! {"index" => 0u64, "delta" => obj! {}, "finish_reason" => reason}],
                None,
            ))];
            let mut credit = None;
            if include_usage {
                credit = Some((1, pc, ec));
                tail.push(sse(chunk(vec![], Some(usage))));
            }
            tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
            (
                content,
                tail,
                credit,
                sse(oai_error_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    MODEL_ERROR,
                )),
                (
                    CT_JSON_BARE,
                    Bytes::from(
                        oai_error_json(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR).go() + "\n",
                    ),
                ),
                CT_SSE,
            )
        }
        Api::OaiCompletion => {
            let chunk = |choices: Vec<J>, usage: Option<J>| {
                let mut j = obj! {
                    "id" => &id,
                    "object" => "text_completion",
                    "created" => created,
                    "choices" => choices,
                    "model" => &model,
                    "system_fingerprint" => "fp_ollama",
                };
                if let Some(u) = usage {
                    j.push("usage", u);
                }
                j
            };
            let zu = || include_usage.then(zero_usage);
            let content = tokens
                .iter()
                .map(|t| {
                    sse(chunk(
                        vec![obj! {"text" => t, "index" => 0u64, "finish_reason" => J::Null}],
                        zu(),
                    ))
                })
                .collect();
            let mut tail = vec![sse(chunk(
                vec![obj! {"text" => "", "index" => 0u64, "finish_reason" => reason}],
                zu(),
            ))];
            let mut credit = None;
            if include_usage {
                credit = Some((1, pc, ec));
                tail.push(sse(chunk(vec![], Some(usage))));
            }
            tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
            (
                content,
                tail,
                credit,
                sse(oai_error_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    MODEL_ERROR,
                )),
                (
                    CT_JSON_BARE,
                    Bytes::from(
                        oai_error_json(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR).go() + "\n",
                    ),
                ),
                CT_SSE,
            )
        }
    };
    let job = StreamJob {
        content,
        tail,
        credit,
        error_line,
        early_error,
        d,
    };
    start_stream(inner, job, ct).await
}

/// Text of one chat message: `content` as a string, or the `text` parts of an OpenAI content array.
fn message_text(m: &Value) -> &str {
    match m.get("content") {
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => parts
            .iter()
            .find_map(|p| p.get("text").and_then(Value::as_str))
            .unwrap_or(""),
        _ => "",
    }
}

fn push_content(j: &mut J, api: Api, content: &str) {
    match api {
        Api::Chat | Api::OaiChat => j.push(
            "message",
            obj! {"role" => "assistant", "content" => content},
        ),
        Api::Generate | Api::OaiCompletion => j.push("response", content),
    }
}

// ----- stream driver -----

struct StreamJob {
    /// Content lines (one per token / progress status).
    content: Vec<Bytes>,
    /// Lines after the content (done line; or finish chunk, usage chunk, [DONE]).
    tail: Vec<Bytes>,
    /// (index in `tail`, prompt tokens, eval tokens) credited to the stats just before that line.
    credit: Option<(usize, u64, u64)>,
    /// Line sent by `[[error_after:K]]` (K > 0).
    error_line: Bytes,
    /// Content type and body of the 500 sent by `[[error_after:0]]`.
    early_error: (&'static str, Bytes),
    d: Directives,
}

struct Gone;

async fn start_stream(
    inner: &Arc<Inner>,
    job: StreamJob,
    ct: &'static str,
) -> Result<Resp, BoxError> {
    let (tx, mut rx) = mpsc::channel(1);
    let inner2 = inner.clone();
    let stop = inner.shutdown.clone();
    tokio::spawn(async move {
        let shut = tokio::select! {
            _ = wait_shutdown(stop) => true,
            r = drive(&inner2, job, &tx) => {
                if r.is_err() {
                    inner2.gone();
                }
                false
            }
        };
        if shut {
            // Never end the body cleanly on shutdown: abort it, or leave it pending until the
            // connection is closed.
            let _ = tx.try_send(Msg::Cut);
            tx.closed().await;
        }
    });
    let first = match rx.recv().await {
        Some(Msg::Data(b)) => Some(b),
        Some(Msg::Start) => None,
        Some(Msg::EarlyError(status, ct, body)) => return Ok(full(status, Some(ct), body)),
        Some(Msg::Cut) | None => return Err("fake ollama: connection cut".into()),
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ct)
        .body(FakeBody(BodyKind::Chan { first, rx }))
        .expect("response"))
}

async fn pause(tx: &mpsc::Sender<Msg>, ms: u64) -> Result<(), Gone> {
    if ms == 0 {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        _ = tx.closed() => Err(Gone),
    }
}

async fn send_line(tx: &mpsc::Sender<Msg>, line: Bytes, split: bool) -> Result<(), Gone> {
    if !split || line.len() < 3 {
        return tx.send(Msg::Data(line)).await.map_err(|_| Gone);
    }
    let a = line.len() / 3;
    let b = 2 * line.len() / 3;
    let pieces = [line.slice(..a), line.slice(a..b), line.slice(b..)];
    for (i, piece) in pieces.into_iter().enumerate() {
        if i > 0 {
            pause(tx, 2).await?;
        }
        tx.send(Msg::Data(piece)).await.map_err(|_| Gone)?;
    }
    Ok(())
}

async fn drive(inner: &Inner, job: StreamJob, tx: &mpsc::Sender<Msg>) -> Result<(), Gone> {
    let d = &job.d;
    if d.hang {
        tx.send(Msg::Start).await.map_err(|_| Gone)?;
        tx.closed().await;
        return Err(Gone);
    }
    let n = job.content.len();
    let err_at = d.error_after.map(|k| k.min(n));
    let cut_at = d.cut_after.map(|k| k.min(n));
    for i in 0..=n {
        let wait = if i == 0 {
            d.first_delay_ms + d.delay_ms
        } else {
            d.delay_ms
        };
        pause(tx, wait).await?;
        if err_at == Some(i) {
            if i == 0 {
                let (ct, body) = job.early_error.clone();
                let _ = tx
                    .send(Msg::EarlyError(StatusCode::INTERNAL_SERVER_ERROR, ct, body))
                    .await;
                return Ok(());
            }
            return send_line(tx, job.error_line.clone(), d.split).await;
        }
        if cut_at == Some(i) {
            if i > 0 {
                // Let the lines already sent reach the socket before the abort.
                pause(tx, 5).await?;
            }
            let _ = tx.send(Msg::Cut).await;
            return Ok(());
        }
        if i < n {
            send_line(tx, job.content[i].clone(), d.split).await?;
            continue;
        }
        for (j, line) in job.tail.iter().enumerate() {
            match job.credit {
                Some((at, p, e)) if at == j => {
                    inner.credit(p, e);
                    if let Err(g) = send_line(tx, line.clone(), d.split).await {
                        inner.uncredit(p, e);
                        return Err(g);
                    }
                }
                _ => send_line(tx, line.clone(), d.split).await?,
            }
        }
    }
    Ok(())
}
