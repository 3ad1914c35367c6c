//! Bad and unusual request bodies through the real binary: not JSON, no `model`, a `model` that
//! is not a string, a 200 MB blob upload, chunked bodies, bodies that stop half-way. Every one
//! reaches the backend as it is (Ollama decides), the agent's memory stays bounded (its own peak
//! RSS, `VmHWM` in `/proc/<pid>/status`), and the agent keeps serving.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fake_ollama::{self, FakeOllama};
use common::{binary, free_port, wait_listening, ConfDir, Metrics, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;

/// The real binary in front of `backend`, on its own port, logs in a file of its conf dir.
struct Agent {
    run: Running,
    port: u16,
    conf: ConfDir,
}

impl Agent {
    async fn start(backend: &str, extra: &str) -> Agent {
        let port = free_port();
        let conf = ConfDir::new(
            "[global]\nhostname = \"test-host\"\ninterval = 60\n",
            &format!(
                "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"127.0.0.1:{port}\"\n{extra}\n"
            ),
        );
        let log = File::create(conf.path().join("agent.log")).unwrap();
        let child = Command::new(binary())
            .arg("--configs")
            .arg(conf.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("agent starts");
        let agent = Agent {
            run: Running(child),
            port,
            conf,
        };
        wait_listening(agent.addr().parse().unwrap()).await;
        agent
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Peak RSS of the agent (`VmHWM`), in bytes.
    fn peak_rss(&self) -> u64 {
        common::proc_stats(self.run.0.id()).hwm_kb * 1024
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.conf.path().join("agent.log")).unwrap_or_default()
    }

    async fn metrics(&self) -> Metrics {
        Metrics(
            reqwest::get(format!("{}/metrics", self.url()))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .unwrap(),
        )
    }

    /// Polls `/metrics` until `pred` holds (a request is recorded when its answer ends, which
    /// may be a moment after the client has the last byte); panics after 10 s.
    async fn metrics_until(&self, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        for _ in 0..200 {
            let m = self.metrics().await;
            if pred(&m) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = self.metrics().await;
        panic!("{what}: not reached within 10 s\n{}", ollama_lines(&m));
    }
}

/// The `ollama_*` request counters of `/metrics`, for failure messages.
fn ollama_lines(m: &Metrics) -> String {
    m.0.lines()
        .filter(|l| l.starts_with("ollama_requests") || l.starts_with("ollama_endpoint"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole HTTP/1.1 answer (read to EOF); de-chunks a chunked body.
fn parse_answer(bytes: &[u8]) -> Raw {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut raw = Raw {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &bytes[end + 4..];
    raw.body = if raw
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    raw
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_line = std::str::from_utf8(&data[..eol]).unwrap();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One chunk of a `Transfer-Encoding: chunked` body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes `parts` one by one (`gap` between them) on a fresh connection, then reads the answer
/// to EOF (the head should say `Connection: close`).
async fn exchange(addr: &str, parts: &[Vec<u8>], gap: Duration) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        s.write_all(p).await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("the answer ends within 20 s")
        .unwrap();
    parse_answer(&answer)
}

/// (status, content type, body) of a POST of `body` to `url`.
async fn post(client: &reqwest::Client, url: &str, body: &'static str) -> (u16, String, String) {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, res.text().await.unwrap())
}

/// Bodies Ollama refuses, sent straight to the fake and then through the agent: the client gets
/// the fake's own answer, the fake got every byte, and each is counted once, under
/// `model="unknown"` when the body names no model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_reach_ollama_unchanged_and_are_counted_once() {
    let fake = FakeOllama::start().await;
    let agent = Agent::start(&fake.url(), "timeout = \"10s\"").await;
    let client = reqwest::Client::new();
    // (body, names a model)
    let bodies: &[(&str, Option<&str>)] = &[
        ("", None),
        ("this is not json", None),
        ("{\"model\":\"llama3.2\",", Some("llama3.2:latest")),
        ("[1,2,3]", None),
        ("{\"prompt\":\"hi\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", None),
        ("{\"model\":42,\"prompt\":\"hi\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", None),
        ("{\"model\":{\"name\":\"llama3.2\"},\"prompt\":\"hi\"}", None),
        ("{\"model\":null,\"prompt\":\"hi\"}", None),
        ("{\"model\":\"llama3.2\",\"prompt\":42,\"messages\":\"hi\"}", Some("llama3.2:latest")),
    ];
    let endpoints = ["/api/generate", "/api/chat", "/v1/chat/completions"];
    let mut unknown = 0.0;
    let mut named = 0.0;
    for endpoint in endpoints {
        for (body, model) in bodies {
            let direct = post(&client, &format!("{}{endpoint}", fake.url()), body).await;
            assert_eq!(
                direct.0, 400,
                "the fake refuses {body:?} on {endpoint}: {direct:?}"
            );
            let before = fake.stats().bodies_bytes;
            let proxied = post(&client, &format!("{}{endpoint}", agent.url()), body).await;
            assert_eq!(
                proxied, direct,
                "{endpoint} {body:?}: the client gets Ollama's own answer"
            );
            assert_eq!(
                fake.stats().bodies_bytes - before,
                body.len() as u64,
                "{endpoint} {body:?}: every byte reached Ollama"
            );
            match model {
                None => unknown += 1.0,
                Some(_) => named += 1.0,
            }
        }
    }
    let m = agent
        .metrics_until("every bad body recorded", |m| {
            m.value("ollama_requests_total", &[("model", "unknown")]) >= unknown
                && m.value("ollama_requests_total", &[("model", "llama3.2:latest")]) >= named
        })
        .await;
    for (model, n) in [("unknown", unknown), ("llama3.2:latest", named)] {
        let l = [("model", model)];
        assert_eq!(
            m.value("ollama_requests_total", &l),
            n,
            "{}",
            ollama_lines(&m)
        );
        assert_eq!(
            m.value("ollama_requests_failed", &l),
            n,
            "{}",
            ollama_lines(&m)
        );
        assert_eq!(m.value("ollama_requests_success", &l), 0.0);
        assert_eq!(m.value("ollama_requests_in_flight", &l), 0.0);
    }
    for endpoint in endpoints {
        let per_endpoint = bodies.iter().filter(|(_, m)| m.is_none()).count() as f64;
        assert_eq!(
            m.value(
                "ollama_endpoint_requests_total",
                &[
                    ("model", "unknown"),
                    ("endpoint", endpoint),
                    ("outcome", "400")
                ]
            ),
            per_endpoint,
            "{}",
            ollama_lines(&m)
        );
    }
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}

/// Writes `total` bytes of generated data in 64 KiB pieces (never the whole body in memory),
/// either with `Content-Length` or as chunks, to `/api/blobs/sha256:<hex>`, and reads the answer.
async fn upload(
    addr: &str,
    digest: &str,
    total: u64,
    chunked: bool,
    pace: Duration,
) -> (Raw, Duration) {
    const PIECE: usize = 64 * 1024;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!(
        "POST /api/blobs/sha256:{digest} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ollama-tap-test\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; PIECE];
    let mut sent = 0u64;
    let mut n = 0u64;
    while sent < total {
        let len = PIECE.min((total - sent) as usize);
        // Different bytes in every piece, no allocation per piece.
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = (i as u64).wrapping_mul(31).wrapping_add(n) as u8;
        }
        let written = if chunked {
            let mut piece = format!("{len:x}\r\n").into_bytes();
            piece.extend_from_slice(&buf[..len]);
            piece.extend_from_slice(b"\r\n");
            s.write_all(&piece).await
        } else {
            s.write_all(&buf[..len]).await
        };
        if written.is_err() {
            // The agent answered early and closed: read what it said.
            break;
        }
        sent += len as u64;
        n += 1;
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    if chunked && sent == total {
        s.write_all(b"0\r\n\r\n").await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut answer))
        .await
        .expect("the upload is answered within 60 s")
        .unwrap();
    (parse_answer(&answer), started.elapsed())
}

/// A 200 MB blob upload streamed by the client in 64 KiB pieces arrives whole, and the agent's
/// peak RSS stays under 100 MB. The same again with `Transfer-Encoding: chunked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_blob_upload_streams_through_in_bounded_memory() {
    const TOTAL: u64 = 200 * MIB;
    const LIMIT: u64 = 100 * MIB;
    let fake = FakeOllama::start().await;
    // The default timeout: an upload this size on a fast link takes a few seconds.
    let agent = Agent::start(&fake.url(), "").await;
    let idle_hwm = agent.peak_rss();

    for (digest_byte, chunked) in [('a', false), ('b', true)] {
        let digest: String = std::iter::repeat_n(digest_byte, 64).collect();
        let before = fake.stats().bodies_bytes;
        let (answer, took) = upload(&agent.addr(), &digest, TOTAL, chunked, Duration::ZERO).await;
        let received = fake.stats().bodies_bytes - before;
        let hwm = agent.peak_rss();
        let framing = if chunked { "chunked" } else { "Content-Length" };
        println!(
            "200 MB blob upload ({framing}) through the agent: {:.1} s, agent VmHWM {:.1} MB (idle {:.1} MB)",
            took.as_secs_f64(),
            hwm as f64 / MIB as f64,
            idle_hwm as f64 / MIB as f64,
        );
        assert_eq!(
            answer.status,
            201,
            "{framing}: {answer:?} {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(received, TOTAL, "{framing}: every byte reached Ollama");
        assert!(
            hwm < LIMIT,
            "{framing}: the agent's peak RSS (VmHWM) reached {:.1} MB through a 200 MB upload, limit 100 MB",
            hwm as f64 / MIB as f64
        );
    }
    let paths = fake.stats().paths;
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("POST /api/blobs/sha256:"))
            .count(),
        2,
        "{paths:?}"
    );
    // Blobs are not metered.
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_requests_total", &[]),
        None,
        "{}",
        ollama_lines(&m)
    );
}

/// An inference body sent with `Transfer-Encoding: chunked`, split inside the `model` value, is
/// forwarded whole and metered under its model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_inference_body_is_forwarded_and_metered_under_its_model() {
    let fake = FakeOllama::start().await;
    let agent = Agent::start(&fake.url(), "").await;
    let prompt = "why is the sky blue [[tokens:7]]";
    let body = format!("{{\"model\":\"qwen2.5:0.5b\",\"prompt\":\"{prompt}\",\"stream\":false}}");
    let pieces = [&body[..4], &body[4..17], &body[17..]];
    assert_eq!(pieces.concat(), body);
    let head = format!(
        "POST /api/generate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        agent.addr()
    );
    let mut parts = vec![head.into_bytes()];
    parts.extend(pieces.iter().map(|p| chunk(p.as_bytes())));
    parts.push(b"0\r\n\r\n".to_vec());
    let before = fake.stats().bodies_bytes;
    let answer = exchange(&agent.addr(), &parts, Duration::from_millis(30)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(fake.stats().bodies_bytes - before, body.len() as u64);
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["model"], "qwen2.5:0.5b");
    assert_eq!(v["response"], fake_ollama::reply_text(prompt));
    assert_eq!(v["done"], true);

    let l = [("model", "qwen2.5:0.5b")];
    let m = agent
        .metrics_until("the chunked request recorded", |m| {
            m.value("ollama_requests_total", &l) >= 1.0
        })
        .await;
    assert_eq!(m.value("ollama_requests_total", &l), 1.0);
    assert_eq!(m.value("ollama_requests_success", &l), 1.0);
    assert_eq!(m.value("ollama_tokens_generated_total", &l), 7.0);
    assert_eq!(
        m.value("ollama_prompt_tokens_total", &l),
        fake_ollama::prompt_tokens(prompt) as f64
    );
    assert_eq!(
        m.get("ollama_requests_total", &[("model", "unknown")]),
        None
    );
}

/// Writes `bytes` (a request whose body stops before its announced end), waits, closes the
/// connection; then checks that it was counted once, as `client_aborted` under `model`, and that
/// the agent still answers the next request.
async fn cut_and_check(agent: &Agent, what: &str, model: Option<&str>, bytes: &[u8]) {
    let before = agent.metrics().await;
    let mut s = TcpStream::connect(agent.addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);

    if let Some(model) = model {
        let l = [("model", model)];
        let m = agent
            .metrics_until(&format!("{what}: recorded"), |m| {
                m.value("ollama_requests_total", &l) >= 1.0
            })
            .await;
        // Counted once, and only as a client abort, now and a moment later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = agent.metrics().await;
        for m in [&m, &later] {
            let lines = ollama_lines(m);
            assert_eq!(m.value("ollama_requests_total", &l), 1.0, "{what}\n{lines}");
            assert_eq!(
                m.value("ollama_requests_failed", &l),
                1.0,
                "{what}\n{lines}"
            );
            assert_eq!(
                m.value(
                    "ollama_endpoint_requests_total",
                    &[("model", model), ("outcome", "client_aborted")]
                ),
                1.0,
                "{what}: counted as client_aborted\n{lines}"
            );
            assert_eq!(m.value("ollama_requests_in_flight", &l), 0.0, "{what}");
        }
    } else {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = agent.metrics().await;
        assert_eq!(
            ollama_lines(&m),
            ollama_lines(&before),
            "{what}: nothing metered"
        );
    }

    // The agent still serves.
    let label = [("model", "llama3.2:latest")];
    let done = before.value("ollama_requests_success", &label);
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &format!("{}/api/generate", agent.url()),
        r#"{"model":"llama3.2","prompt":"still there?","stream":false}"#,
    )
    .await;
    assert_eq!(status, 200, "{what}: the next request works: {text}");
    agent
        .metrics_until(&format!("{what}: the next request recorded"), |m| {
            m.value("ollama_requests_success", &label) > done
        })
        .await;
}

fn head(addr: &str, path: &str, framing: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    )
    .into_bytes()
}

/// A body that stops half-way (the client closes the connection before sending what it
/// announced) before the agent knows its model is one `client_aborted` under `unknown`; a blob
/// upload that stops half-way is not metered; the agent keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_half_way_is_one_client_abort_and_the_agent_keeps_serving() {
    let fake = FakeOllama::start().await;
    let agent = Agent::start(&fake.url(), "").await;
    let addr = agent.addr();

    let mut bytes = head(&addr, "/api/generate", "Content-Length: 1000");
    bytes.extend(b"{\"prompt\":\"half");
    cut_and_check(&agent, "cut before the model", Some("unknown"), &bytes).await;

    let digest: String = std::iter::repeat_n('d', 64).collect();
    let mut bytes = head(
        &addr,
        &format!("/api/blobs/sha256:{digest}"),
        "Content-Length: 10000000",
    );
    bytes.extend(std::iter::repeat_n(7u8, 300_000));
    cut_and_check(&agent, "blob upload cut", None, &bytes).await;
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}

/// The same once the agent has read the model and sent the request on to Ollama: the body then
/// breaks off while it is being forwarded. Still the client's doing: one `client_aborted` under
/// the model (not `backend_unreachable`), and a passive instance keeps `ollama_up` at 1 (Ollama
/// did nothing wrong), also for a blob upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_after_its_model_was_forwarded_is_a_client_abort() {
    let fake = FakeOllama::start().await;
    let agent = Agent::start(&fake.url(), "passive = true").await;
    let addr = agent.addr();

    let mut bytes = head(&addr, "/api/generate", "Content-Length: 1000");
    bytes.extend(b"{\"model\":\"gemma3:1b\",\"prompt\":\"half");
    cut_and_check(&agent, "cut after the model", Some("gemma3:1b"), &bytes).await;
    assert_eq!(agent.metrics().await.get("ollama_up", &[]), Some(1.0));

    let mut bytes = head(&addr, "/api/chat", "Transfer-Encoding: chunked");
    bytes.extend(chunk(b"{\"model\":\"test-chunked\","));
    bytes.extend(b"100\r\n\"messages\":[");
    cut_and_check(
        &agent,
        "cut inside a chunk",
        Some("test-chunked:latest"),
        &bytes,
    )
    .await;
    assert_eq!(agent.metrics().await.get("ollama_up", &[]), Some(1.0));

    let digest: String = std::iter::repeat_n('e', 64).collect();
    let mut bytes = head(
        &addr,
        &format!("/api/blobs/sha256:{digest}"),
        "Content-Length: 10000000",
    );
    bytes.extend(std::iter::repeat_n(7u8, 300_000));
    cut_and_check(&agent, "blob upload cut", None, &bytes).await;
    assert_eq!(
        agent.metrics().await.get("ollama_up", &[]),
        Some(1.0),
        "a passive instance blames Ollama for a client's broken upload"
    );
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}

/// `timeout` bounds waiting for Ollama, not the client's upload: a blob upload that takes longer
/// than `timeout` to send (a slow link, a multi-GB model layer) still gets Ollama's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_the_timeout_is_not_cut() {
    let fake = FakeOllama::start().await;
    let agent = Agent::start(&fake.url(), "timeout = \"1s\"").await;
    let digest: String = std::iter::repeat_n('c', 64).collect();
    let total = 40 * 64 * 1024;
    let before = fake.stats().bodies_bytes;
    // 40 pieces, 75 ms apart: about 3 s of upload, never idle for anything near 1 s.
    let (answer, took) = upload(
        &agent.addr(),
        &digest,
        total,
        false,
        Duration::from_millis(75),
    )
    .await;
    assert_eq!(
        answer.status,
        201,
        "a 3 s upload with timeout = 1s: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(fake.stats().bodies_bytes - before, total);
    assert!(took > Duration::from_secs(2), "{took:?}");
}
