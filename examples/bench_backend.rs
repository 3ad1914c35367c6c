//! A fast stand-in for Ollama, written for `bench/run.sh`: answers `/api/generate` (and
//! `/api/chat`) so cheaply that a benchmark measures the proxy in front of it, not itself.
//!
//! ```text
//! cargo run --release --example bench_backend -- --listen 127.0.0.1:11434
//! curl -s 'localhost:11434/api/generate' -d '{"model":"bench","prompt":"hi","stream":false}'
//! curl -sN 'localhost:11434/api/generate?lines=5&delay_ms=100' -d '{"model":"bench","prompt":"hi"}'
//! ```
//!
//! What the answer is, is chosen by the request:
//! - body containing `"stream":false` (or `"stream": false`): one JSON object shaped like
//!   Ollama's non-streamed answer, `Content-Type: application/json` with a `Content-Length`;
//!   query `bytes=N` sets the length of its `response` text (default 16).
//! - otherwise an NDJSON stream (`application/x-ndjson`, chunked), one line per HTTP chunk:
//!   query `lines=N` lines in all (default 10, at least 1), the last one the `done: true`
//!   object with `eval_count` = N − 1 and the duration fields; `delay_ms=D` (default 0) waits
//!   D ms between two lines (the first line goes out at once, with the headers).
//!
//! `GET /bench/stats` answers `lines=L answers=A`: the NDJSON lines and the streamed answers
//! (their last line) this process has handed to hyper since it started, so that a benchmark can
//! count the lines that went through a proxy even when answers are cut by the end of a run.
//!
//! `created_at` is one fixed timestamp taken at start: the backend formats nothing per line.
//! The request body is read whole before answering (as Ollama does). `GET /` and
//! `GET /api/version` answer like Ollama; anything else is a 404. Stops on Ctrl-C or SIGTERM.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

/// Lines and streamed answers sent since start (`GET /bench/stats`).
static LINES: AtomicU64 = AtomicU64::new(0);
static ANSWERS: AtomicU64 = AtomicU64::new(0);

/// What every answer shares, built once.
struct Shared {
    created_at: String,
    /// One `done: false` line, newline included.
    token_line: Bytes,
}

fn usage() -> ! {
    eprintln!("usage: bench_backend [--listen ADDR] [--threads N]   (default 127.0.0.1:11434, 2)");
    std::process::exit(2);
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:11434".parse().expect("default address");
    let mut threads = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" | "-l" => {
                let v = args.next().unwrap_or_else(|| usage());
                listen = v.parse().unwrap_or_else(|_| usage());
            }
            "--threads" => {
                let v = args.next().unwrap_or_else(|| usage());
                threads = v.parse().unwrap_or_else(|_| usage());
            }
            _ => usage(),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(listen));
}

async fn serve(listen: SocketAddr) {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench_backend: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let created_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string();
    let token_line = Bytes::from(format!(
        "{{\"model\":\"bench\",\"created_at\":\"{created_at}\",\"response\":\" tok\",\"done\":false}}\n"
    ));
    let shared = Arc::new(Shared {
        created_at,
        token_line,
    });
    println!(
        "bench backend listening on http://{}",
        listener.local_addr().expect("bound address")
    );
    let accept = async {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors, for example: wait a little, keep serving.
                    eprintln!("bench_backend: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(answer(req, &shared).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = accept => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

type AnswerBody = http_body_util::Either<Full<Bytes>, Lines>;

fn full(bytes: Bytes) -> AnswerBody {
    http_body_util::Either::Left(Full::new(bytes))
}

async fn answer(req: Request<Incoming>, shared: &Shared) -> Response<AnswerBody> {
    let path = req.uri().path();
    let inference = matches!(path, "/api/generate" | "/api/chat");
    if path == "/bench/stats" {
        let stats = format!(
            "lines={} answers={}\n",
            LINES.load(Ordering::Relaxed),
            ANSWERS.load(Ordering::Relaxed)
        );
        return respond(StatusCode::OK, "text/plain", full(Bytes::from(stats)));
    }
    if !inference {
        let (status, ctype, body): (_, _, &'static str) = match path {
            "/" => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "Ollama is running",
            ),
            "/api/version" => (
                StatusCode::OK,
                "application/json; charset=utf-8",
                "{\"version\":\"0.0.0-bench\"}",
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", "404 page not found"),
        };
        return respond(status, ctype, full(Bytes::from_static(body.as_bytes())));
    }
    let (mut lines, mut delay_ms, mut text_bytes) = (10u32, 0u64, 16usize);
    for pair in req.uri().query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "lines" => lines = v.parse().unwrap_or(lines).max(1),
            "delay_ms" => delay_ms = v.parse().unwrap_or(delay_ms),
            "bytes" => text_bytes = v.parse().unwrap_or(text_bytes),
            _ => {}
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let stream = memchr::memmem::find(&body, b"\"stream\":false").is_none()
        && memchr::memmem::find(&body, b"\"stream\": false").is_none();
    if !stream {
        let text = "x".repeat(text_bytes);
        let json = format!(
            "{{\"model\":\"bench\",\"created_at\":\"{}\",\"response\":\"{text}\",\"done\":true,\
             \"done_reason\":\"stop\",\"context\":[1,2,3],\"total_duration\":1000000,\
             \"load_duration\":100000,\"prompt_eval_count\":2,\"prompt_eval_duration\":200000,\
             \"eval_count\":1,\"eval_duration\":700000}}",
            shared.created_at
        );
        return respond(
            StatusCode::OK,
            "application/json; charset=utf-8",
            full(Bytes::from(json)),
        );
    }
    let tokens = lines - 1;
    let last = Bytes::from(format!(
        "{{\"model\":\"bench\",\"created_at\":\"{}\",\"response\":\"\",\"done\":true,\
         \"done_reason\":\"stop\",\"context\":[1,2,3],\"total_duration\":{},\
         \"load_duration\":100000,\"prompt_eval_count\":2,\"prompt_eval_duration\":200000,\
         \"eval_count\":{tokens},\"eval_duration\":{}}}\n",
        shared.created_at,
        1_000_000 + u64::from(tokens) * 1000,
        u64::from(tokens.max(1)) * 1000,
    ));
    let body = Lines {
        left: lines,
        sent: 0,
        token: shared.token_line.clone(),
        last,
        delay: Duration::from_millis(delay_ms),
        sleep: None,
    };
    respond(
        StatusCode::OK,
        "application/x-ndjson",
        http_body_util::Either::Right(body),
    )
}

fn respond(status: StatusCode, ctype: &'static str, body: AnswerBody) -> Response<AnswerBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

/// An NDJSON answer: `left` lines still to send, one frame each, `delay` apart.
struct Lines {
    left: u32,
    sent: u32,
    token: Bytes,
    last: Bytes,
    delay: Duration,
    /// Armed between two lines when `delay` is not zero.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        if this.sent > 0 && !this.delay.is_zero() {
            let delay = this.delay;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Re-arm for the next gap.
            sleep.as_mut().reset(Instant::now() + delay);
        }
        this.left -= 1;
        this.sent += 1;
        LINES.fetch_add(1, Ordering::Relaxed);
        let line = if this.left == 0 {
            ANSWERS.fetch_add(1, Ordering::Relaxed);
            this.last.clone()
        } else {
            this.token.clone()
        };
        Poll::Ready(Some(Ok(Frame::data(line))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}
