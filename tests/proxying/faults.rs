//! Backend faults (down, dying mid-stream, misbehaving, stalling, huge lines): the client gets what the backend sent, the agent counts a failure and keeps serving.

use crate::common;

use common::fake_ollama::FakeOllama;
use common::raw::{chunk, chunked, chunked_head, sized, Conn, RawBackend, LAST_CHUNK};
use common::{post, wait_metrics, Binary, ConfDir, InProcess, Metrics, WAIT as T};
use tokio::net::{TcpSocket, TcpStream};

const CHAT: &str =
    r#"{"model":"llama3.2","messages":[{"role":"user","content":"why is the sky blue"}]}"#;

/// The `ollama_up` gauge.
fn up(m: &Metrics) -> f64 {
    m.get("ollama_up", &[])
        .expect("ollama_up is always exposed")
}

/// Exactly `n` requests recorded in all, and `n` of them with `outcome` under `model`.
fn assert_outcome(m: &Metrics, model: &str, outcome: &str, n: f64) {
    let ep = "ollama_endpoint_requests_total";
    assert_eq!(
        m.sum(ep, &[("model", model), ("outcome", outcome)]),
        n,
        "expected {n} × {outcome} for {model}:\n{}",
        m.0
    );
    assert_eq!(m.sum(ep, &[]), n, "recorded more than once:\n{}", m.0);
    assert_eq!(m.value("ollama_requests_failed", &[("model", model)]), n);
    assert_eq!(m.value("ollama_requests_success", &[("model", model)]), 0.0);
    assert_eq!(m.sum("ollama_requests_in_flight", &[]), 0.0, "{}", m.0);
}

/// Reads an answer's body chunk by chunk; `Err` carries what arrived before the body broke off.
async fn read_body(mut res: reqwest::Response) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(T, res.chunk())
            .await
            .expect("the body moves")
        {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return Ok(got),
            Err(_) => return Err(got),
        }
    }
}

/// A 502 or 504 in Ollama's error shape.
async fn assert_error_answer(res: reqwest::Response, status: u16) {
    assert_eq!(res.status(), status);
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert!(body["error"].is_string(), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Backend down, dying, coming back
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_with_the_backend_down_answers_502_and_serves_again_once_it_is_back() {
    let down = common::ClosedPort::new();
    let addr = down.addr();
    // Checks every second ([global] interval = 1).
    let agent = InProcess::single(&format!("http://{addr}")).await;
    let url = agent.url();

    assert_error_answer(post(&format!("{url}/api/chat"), CHAT).await, 502).await;
    assert_error_answer(reqwest::get(format!("{url}/api/tags")).await.unwrap(), 502).await;
    let m = wait_metrics(&url, |m| up(m) == 0.0).await;
    assert_outcome(&m, "llama3.2:latest", "backend_unreachable", 1.0);
    let health = reqwest::get(format!("{url}/health")).await.unwrap();
    assert_eq!(health.status(), 503);

    // The backend comes up: traffic flows through the same agent, no restart.
    let fake = FakeOllama::serve(down.listen()).unwrap();
    let res = post(&format!("{url}/api/chat"), CHAT).await;
    assert_eq!(res.status(), 200);
    let body = read_body(res).await.expect("a whole stream");
    assert!(String::from_utf8_lossy(&body).contains("\"done\":true"));
    let m = wait_metrics(&url, |m| up(m) == 1.0).await;
    assert_eq!(
        m.get("ollama_requests_success", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
    let health = reqwest::get(format!("{url}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let paths = fake.stats().paths;
    assert_eq!(
        paths.iter().filter(|p| *p == "POST /api/chat").count(),
        1,
        "{paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_stream_cuts_the_client_stream_and_ollama_up_drops_until_it_returns() {
    let fake = FakeOllama::start().await;
    let addr = fake.addr;
    let agent = InProcess::single(&fake.url()).await;
    let url = agent.url();
    wait_metrics(&url, |m| up(m) == 1.0).await;

    let mut res = post(&format!("{url}/api/chat"), r#"{"model":"llama3.2","messages":[{"role":"user","content":"long [[tokens:500]] [[delay:20]]"}]}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().expect("a first line");
    let line = String::from_utf8_lossy(&first).into_owned();
    assert!(
        line.starts_with("{\"model\":\"llama3.2\"") && line.contains("\"done\":false"),
        "{line}"
    );
    fake.stop().await;
    let rest = read_body(res)
        .await
        .expect_err("the client sees the stream cut, not a clean end");
    let seen = [&first[..], &rest[..]].concat();
    assert!(!String::from_utf8_lossy(&seen).contains("\"done\":true"));

    let m = wait_metrics(&url, |m| up(m) == 0.0).await;
    assert_outcome(&m, "llama3.2:latest", "stream_error", 1.0);
    assert_error_answer(post(&format!("{url}/api/chat"), CHAT).await, 502).await;

    let fake = FakeOllama::start_on(addr).await.unwrap();
    let res = post(&format!("{url}/api/chat"), CHAT).await;
    assert_eq!(res.status(), 200);
    read_body(res).await.expect("a whole stream");
    let m = wait_metrics(&url, |m| up(m) == 1.0).await;
    assert_eq!(
        m.get("ollama_requests_success", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
    drop(fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_the_backend_reaches_the_client_cut_and_is_one_stream_error() {
    // Three lines, then the backend closes the connection inside the chunked body (no last
    // chunk): the client gets exactly those lines, then a cut, never a clean end.
    let lines: Vec<String> = (0..3)
        .map(|i| format!("{{\"model\":\"llama3.2\",\"response\":\"w{i}\",\"done\":false}}\n"))
        .collect();
    let script = lines.clone();
    let backend = RawBackend::start(move |mut conn: Conn| {
        let lines = script.clone();
        async move {
            if conn.read_request().await.is_none() {
                return;
            }
            let mut out = chunked_head("application/x-ndjson", "");
            for l in &lines {
                out.extend(chunk(l.as_bytes()));
            }
            conn.say(&out).await;
        }
    })
    .await;
    let agent = agent_for(&backend.url(), "5s").await;
    let res = post(
        &format!("{}/api/generate", agent.url()),
        r#"{"model":"llama3.2","prompt":"x"}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let got = read_body(res).await.expect_err("a cut stream");
    assert_eq!(String::from_utf8(got).unwrap(), lines.concat());
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    assert_outcome(&m, "llama3.2:latest", "stream_error", 1.0);
}

/// The fake's `[[cut_after:K]]` resets the connection (a crashed server): what was in flight
/// may be lost, but the client never sees a clean end, never more than was sent, and it is
/// one stream error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_by_the_backend_is_one_stream_error_and_never_a_clean_end() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(&fake.url(), "passive = true")).await;
    let res = post(
        &format!("{}/api/generate", agent.url()),
        r#"{"model":"llama3.2","prompt":"x [[tokens:10]] [[cut_after:3]]"}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let got = read_body(res).await.expect_err("a cut stream");
    let text = String::from_utf8(got).unwrap();
    let tokens = common::fake_ollama::reply_tokens("x [[tokens:10]] [[cut_after:3]]");
    // Whatever arrived is a prefix of the three lines the fake sent, line by line.
    for (line, token) in text.split_inclusive('\n').zip(&tokens) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["response"], token.as_str(), "{text}");
        assert_eq!(v["done"], false, "{text}");
    }
    assert!(text.lines().count() <= 3, "{text}");
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    assert_outcome(&m, "llama3.2:latest", "stream_error", 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_cannot_be_connected_to_in_time_is_a_504_and_one_timeout() {
    // A listener that never accepts, with a backlog of 1: Linux queues backlog + 1 finished
    // handshakes (the queue is full when it holds *more* than the backlog) and drops every
    // further SYN, so the agent's connect hangs. Filled by count, not by a timeout.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    const BACKLOG: u32 = 1;
    let listener = socket.listen(BACKLOG).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..=BACKLOG {
        queued.push(TcpStream::connect(addr).await.expect("a queued connection"));
    }
    let agent = InProcess::start(ConfDir::new(
        "[global]\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"http://{addr}\"\nproxy_listen_addr = \"127.0.0.1:0\"\ntimeout = \"300ms\"\npassive = true\n"
        ),
    ))
    .await;
    assert_error_answer(post(&format!("{}/api/chat", agent.url()), CHAT).await, 504).await;
    let m = agent.metrics().await;
    assert_outcome(&m, "llama3.2:latest", "timeout", 1.0);
    drop(listener);
}

// ---------------------------------------------------------------------------------------------
// Misbehaving backends, scripted on raw TCP
// ---------------------------------------------------------------------------------------------

/// What a scripted backend does once it has read a request.
#[derive(Clone)]
enum Script {
    /// Writes these bytes, then closes the connection.
    Say(Vec<u8>),
    /// Writes these bytes, then keeps the connection open and silent.
    SayThenHang(Vec<u8>),
}

impl Script {
    /// A backend playing this script on every connection.
    async fn backend(self) -> RawBackend {
        RawBackend::start(move |mut conn: Conn| {
            let script = self.clone();
            async move {
                if conn.read_request().await.is_none() {
                    return;
                }
                match script {
                    Script::Say(bytes) => conn.say(&bytes).await,
                    Script::SayThenHang(bytes) => {
                        if conn.write(&bytes).await {
                            conn.closed().await;
                        }
                    }
                }
            }
        })
        .await
    }
}

/// A passive agent in front of `backend` with `timeout`.
async fn agent_for(backend: &str, timeout: &str) -> InProcess {
    InProcess::start(ConfDir::new(
        "[global]\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"127.0.0.1:0\"\ntimeout = \"{timeout}\"\npassive = true\n"
        ),
    ))
    .await
}

/// One request through a passive agent in front of a backend playing `script`: the client gets
/// exactly `want_body` with status 200, and the request is one failure with `outcome`.
async fn misbehaving(
    script: Script,
    path: &str,
    request: &str,
    want_body: &str,
    clean_end: bool,
    outcome: &str,
) {
    // A stalled answer is cut after `timeout`; the others must never be (a loaded machine).
    let timeout = match script {
        Script::Say(_) => "10s",
        Script::SayThenHang(_) => "1s",
    };
    let backend = script.backend().await;
    let agent = agent_for(&backend.url(), timeout).await;
    let res = post(&format!("{}{path}", agent.url()), request).await;
    assert_eq!(res.status(), 200, "{path} {request}");
    let body = read_body(res).await;
    assert_eq!(body.is_ok(), clean_end, "{path} {request}: {body:?}");
    let body = body.unwrap_or_else(|e| e);
    assert_eq!(
        String::from_utf8_lossy(&body),
        want_body,
        "{path} {request}: the client did not get what the backend sent"
    );
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    let model = if path.starts_with("/v1") {
        "m:latest"
    } else {
        "llama3.2:latest"
    };
    assert_outcome(&m, model, outcome, 1.0);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_json_reaches_the_client_as_sent_and_is_one_failure() {
    let generate = r#"{"model":"llama3.2","prompt":"hi","stream":false}"#;
    let html = "<html><body>502 Bad Gateway</body></html>\n";
    misbehaving(
        Script::Say(sized("application/json; charset=utf-8", html)),
        "/api/generate",
        generate,
        html,
        true,
        "stream_error",
    )
    .await;
    let stream = r#"{"model":"llama3.2","prompt":"hi"}"#;
    let noise = ["\u{0}\u{1}binary\u{7f}", "}}}]]]{{{", "\n\n\"done\":true\n"];
    misbehaving(
        Script::Say(chunked("application/x-ndjson", &noise)),
        "/api/generate",
        stream,
        &noise.concat(),
        true,
        "stream_error",
    )
    .await;
    let openai = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    misbehaving(
        Script::Say(sized("application/json", "not json at all")),
        "/v1/chat/completions",
        openai,
        "not json at all",
        true,
        "stream_error",
    )
    .await;
    let openai_stream =
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let events = [
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"",
        "\n\ndata: ][\n\n",
    ];
    misbehaving(
        Script::Say(chunked("text/event-stream", &events)),
        "/v1/chat/completions",
        openai_stream,
        &events.concat(),
        true,
        "stream_error",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_line_that_is_not_json_reaches_the_client_as_sent_and_is_one_failure() {
    let request = r#"{"model":"llama3.2","prompt":"hi"}"#;
    let line = "{\"model\":\"llama3.2\",\"response\":\"Hi\",\"done\":false}\n";
    for last in [
        "this is not json\n",
        // The final object, broken off before its end: its stats must not count.
        "{\"model\":\"llama3.2\",\"response\":\"\",\"done\":true,\"eval_count\":3",
        "{\"model\":\"llama3.2\",\"response\":\"\",\"done\":true,\"eval_count\":3,\n",
    ] {
        misbehaving(
            Script::Say(chunked("application/x-ndjson", &[line, last])),
            "/api/generate",
            request,
            &format!("{line}{last}"),
            true,
            "stream_error",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_http_is_a_502_and_one_failure() {
    let backend = Script::Say(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec())
        .backend()
        .await;
    let agent = agent_for(&backend.url(), "5s").await;
    assert_error_answer(post(&format!("{}/api/chat", agent.url()), CHAT).await, 502).await;
    let m = agent.metrics().await;
    assert_outcome(&m, "llama3.2:latest", "backend_unreachable", 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_ends_is_cut_after_timeout_and_is_one_timeout() {
    let line = "{\"model\":\"llama3.2\",\"response\":\"Hi\",\"done\":false}\n";
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stalled = format!("{head}{:x}\r\n{line}\r\n", line.len());
    misbehaving(
        Script::SayThenHang(stalled.into_bytes()),
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"hi"}"#,
        line,
        false,
        "timeout",
    )
    .await;
    // A sized answer that stops half-way.
    let half = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":\"llama3.2\",";
    misbehaving(
        Script::SayThenHang(half.as_bytes().to_vec()),
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"hi","stream":false}"#,
        "{\"model\":\"llama3.2\",",
        false,
        "timeout",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// A 100 MB single line, through the real binary
// ---------------------------------------------------------------------------------------------

/// Byte count and FNV-1a hash of a byte stream, fed in pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest {
    len: u64,
    hash: u64,
}

impl Digest {
    fn new() -> Self {
        Digest {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        for &b in bytes {
            self.hash = (self.hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Size of the huge line's `response` value.
const HUGE: usize = 100 * 1024 * 1024;
/// Pieces the backend writes it in.
const PIECE: usize = 64 * 1024;
/// The line around the huge value.
const LINE_START: &[u8] = b"{\"model\":\"m\",\"response\":\"";
const LINE_END: &[u8] = b"\",\"done\":false}\n";

/// A backend answering one request with a single NDJSON line carrying a 100 MB `response`
/// (and no `done`), written in 64 KiB chunks as the agent takes them; the receiver gets the
/// digest of the body it sent.
async fn huge_line_backend() -> (RawBackend, tokio::sync::oneshot::Receiver<Digest>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let backend = RawBackend::start(move |mut conn: Conn| {
        let tx = tx.lock().unwrap().take();
        async move {
            let Some(tx) = tx else { return };
            if conn.read_request().await.is_none() {
                return;
            }
            assert!(conn.write(&chunked_head("application/x-ndjson", "")).await);
            // 26 pieces, each the alphabet from another letter: the content shifts along the line.
            let pieces: Vec<Vec<u8>> = (0..26u8)
                .map(|k| {
                    (0..PIECE)
                        .map(|j| b'a' + ((j as u8 % 26 + k) % 26))
                        .collect()
                })
                .collect();
            let mut sent = Digest::new();
            let parts = std::iter::once(LINE_START)
                .chain((0..HUGE / PIECE).map(|i| &pieces[i % 26][..]))
                .chain(std::iter::once(LINE_END));
            for data in parts {
                sent.feed(data);
                assert!(conn.write(&chunk(data)).await, "the agent hung up");
            }
            assert!(conn.write(LAST_CHUNK).await);
            let _ = tx.send(sent);
            conn.closed().await;
        }
    })
    .await;
    (backend, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_single_line_reaches_the_client_whole_without_the_agent_buffering_it() {
    let (backend, sent) = huge_line_backend().await;
    let mut agent = Binary::single(&backend.url(), "passive = true").await;
    let pid = agent.pid();
    let url = agent.url();
    let common::ProcStats {
        rss_kb: rss_before,
        hwm_kb: hwm_before,
        ..
    } = common::proc_stats(pid);

    let res = post(
        &format!("{url}/api/generate"),
        r#"{"model":"m","prompt":"one huge line"}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut res = res;
    let mut got = Digest::new();
    let mut tail = Vec::new();
    while let Some(chunk) = tokio::time::timeout(T, res.chunk())
        .await
        .expect("the line keeps moving")
        .expect("the body ends cleanly")
    {
        got.feed(&chunk);
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(32)..]);
        tail.drain(..tail.len().saturating_sub(32));
    }
    let sent = sent.await.unwrap();
    let common::ProcStats {
        rss_kb: rss_after,
        hwm_kb: hwm_after,
        ..
    } = common::proc_stats(pid);
    let figures =
        format!("VmRSS {rss_before} → {rss_after} kB, VmHWM {hwm_before} → {hwm_after} kB");
    eprintln!("100 MB line: {figures}");

    assert_eq!(
        got, sent,
        "the client did not get every byte the backend sent"
    );
    assert_eq!(got.len, (LINE_START.len() + HUGE + LINE_END.len()) as u64);
    assert!(tail.ends_with(LINE_END));
    // The agent passed 100 MB through holding a small part of it at any time.
    assert!(
        hwm_after < hwm_before.max(rss_before) + 32 * 1024,
        "the agent's peak memory grew by 32 MB or more: {figures}"
    );
    // A line without `done` is not a success.
    let m = wait_metrics(&url, |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    assert_outcome(&m, "m:latest", "stream_error", 1.0);
    agent.assert_healthy();
}
