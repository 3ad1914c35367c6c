//! Bad and unusual request bodies through the real binary: not JSON, no `model`, a `model` that
//! is not a string, a 200 MB blob upload, chunked bodies, bodies that stop half-way. Every one
//! reaches the backend as it is (Ollama decides), the agent's memory stays bounded (its own peak
//! RSS, `VmHWM` in `/proc/<pid>/status`), and the agent keeps serving.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::fake_ollama::{self, FakeOllama};
use common::raw::{chunk, exchange_parts, Answer, Conn, RawBackend};
use common::{wait_until, Binary, Metrics};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;

/// The real binary in front of `backend` (global interval 60 s: no check during a test).
async fn agent(backend: &str, extra: &str) -> Binary {
    Binary::start(common::ConfDir::new(
        "[global]\nhostname = \"test-host\"\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n{extra}\n"
        ),
    ))
    .await
}

/// Peak RSS of the agent (`VmHWM`), in bytes.
fn peak_rss(agent: &Binary) -> u64 {
    agent.stats().hwm_kb * 1024
}

/// The `ollama_*` request counters of `/metrics`, for failure messages.
fn ollama_lines(m: &Metrics) -> String {
    m.0.lines()
        .filter(|l| l.starts_with("ollama_requests") || l.starts_with("ollama_endpoint"))
        .collect::<Vec<_>>()
        .join("\n")
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
    let agent = agent(&fake.url(), "timeout = \"10s\"").await;
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
        .wait_metrics(|m| {
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
/// With `paced_by`, each piece waits until that backend has received the one before, then
/// [`PACE`] more: an upload slow by construction, whatever the scheduler does.
async fn upload(
    addr: SocketAddr,
    digest: &str,
    total: u64,
    chunked: bool,
    paced_by: Option<&RawBackend>,
) -> (Answer, Duration) {
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
        if let Some(backend) = paced_by {
            wait_until("the backend receives each piece", || {
                backend.body_bytes() >= sent
            })
            .await;
            tokio::time::sleep(PACE).await;
        }
    }
    if chunked && sent == total {
        s.write_all(b"0\r\n\r\n").await.unwrap();
    }
    let answer = common::raw::read_answer(&mut s).await;
    (answer, started.elapsed())
}

/// The pause between two pieces of a paced upload.
const PACE: Duration = Duration::from_millis(100);

/// A 200 MB blob upload streamed by the client in 64 KiB pieces arrives whole, and the agent's
/// peak RSS stays under 100 MB. The same again with `Transfer-Encoding: chunked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_blob_upload_streams_through_in_bounded_memory() {
    const TOTAL: u64 = 200 * MIB;
    const LIMIT: u64 = 100 * MIB;
    let fake = FakeOllama::start().await;
    // The default timeout: an upload this size on a fast link takes a few seconds.
    let agent = agent(&fake.url(), "").await;
    let idle_hwm = peak_rss(&agent);

    for (digest_byte, chunked) in [('a', false), ('b', true)] {
        let digest: String = std::iter::repeat_n(digest_byte, 64).collect();
        let before = fake.stats().bodies_bytes;
        let (answer, took) = upload(agent.addr(), &digest, TOTAL, chunked, None).await;
        let received = fake.stats().bodies_bytes - before;
        let hwm = peak_rss(&agent);
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
    let agent = agent(&fake.url(), "").await;
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
    // Pieces 30 ms apart, so that they usually arrive as separate reads (the test holds
    // either way: the split is inside the body either way).
    let answer = exchange_parts(agent.addr(), &parts, |_| {
        tokio::time::sleep(Duration::from_millis(30))
    })
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(fake.stats().bodies_bytes - before, body.len() as u64);
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["model"], "qwen2.5:0.5b");
    assert_eq!(v["response"], fake_ollama::reply_text(prompt));
    assert_eq!(v["done"], true);

    let l = [("model", "qwen2.5:0.5b")];
    let m = agent
        .wait_metrics(|m| m.value("ollama_requests_total", &l) >= 1.0)
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

/// Writes `bytes` (a request whose body stops before its announced end), waits until the fake
/// has the request when `forwarded` (the agent sent it on), closes the connection; then checks
/// that it was counted once, as `client_aborted` under `model` (or not at all without a model),
/// and that the agent still answers the next request, after which the count is still the same.
async fn cut_and_check(
    agent: &Binary,
    fake: &FakeOllama,
    what: &str,
    model: Option<&str>,
    forwarded: bool,
    bytes: &[u8],
) {
    let before = agent.metrics().await;
    let seen = fake.stats().requests;
    let mut s = TcpStream::connect(agent.addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if forwarded {
        fake.wait_until(common::WAIT, |st| st.requests > seen).await;
    }
    drop(s);

    let recorded = |m: &Metrics| m.sum("ollama_endpoint_requests_total", &[]);
    let check = |m: &Metrics| match model {
        Some(model) => {
            let l = [("model", model)];
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
        None => unreachable!("only requests with a model are checked"),
    };
    if model.is_some() {
        let m = agent
            .wait_metrics(|m| recorded(m) > recorded(&before))
            .await;
        check(&m);
    }

    // The agent still serves; once the next request is recorded, the cut one is still counted
    // exactly as before (once, or not at all).
    let label = [("model", "llama3.2:latest")];
    let done = before.value("ollama_requests_success", &label);
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &format!("{}/api/generate", agent.url()),
        r#"{"model":"llama3.2","prompt":"still there?","stream":false}"#,
    )
    .await;
    assert_eq!(status, 200, "{what}: the next request works: {text}");
    let m = agent
        .wait_metrics(|m| m.value("ollama_requests_success", &label) > done)
        .await;
    let cut = if model.is_some() { 1.0 } else { 0.0 };
    assert_eq!(
        recorded(&m),
        recorded(&before) + cut + 1.0,
        "{what}: the cut request and the next one, nothing else\n{}",
        ollama_lines(&m)
    );
    if model.is_some() {
        check(&m);
    }
}

fn head(addr: &SocketAddr, path: &str, framing: &str) -> Vec<u8> {
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
    let agent = agent(&fake.url(), "").await;
    let addr = agent.addr();

    let mut bytes = head(&addr, "/api/generate", "Content-Length: 1000");
    bytes.extend(b"{\"prompt\":\"half");
    cut_and_check(
        &agent,
        &fake,
        "cut before the model",
        Some("unknown"),
        false,
        &bytes,
    )
    .await;

    let digest: String = std::iter::repeat_n('d', 64).collect();
    let mut bytes = head(
        &addr,
        &format!("/api/blobs/sha256:{digest}"),
        "Content-Length: 10000000",
    );
    bytes.extend(std::iter::repeat_n(7u8, 300_000));
    cut_and_check(&agent, &fake, "blob upload cut", None, true, &bytes).await;
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}

/// The same once the agent has read the model and sent the request on to Ollama: the body then
/// breaks off while it is being forwarded. Still the client's doing: one `client_aborted` under
/// the model (not `backend_unreachable`), and a passive instance keeps `ollama_up` at 1 (Ollama
/// did nothing wrong), also for a blob upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_after_its_model_was_forwarded_is_a_client_abort() {
    let fake = FakeOllama::start().await;
    let agent = agent(&fake.url(), "passive = true").await;
    let addr = agent.addr();

    let mut bytes = head(&addr, "/api/generate", "Content-Length: 1000");
    bytes.extend(b"{\"model\":\"gemma3:1b\",\"prompt\":\"half");
    cut_and_check(
        &agent,
        &fake,
        "cut after the model",
        Some("gemma3:1b"),
        true,
        &bytes,
    )
    .await;
    assert_eq!(agent.metrics().await.get("ollama_up", &[]), Some(1.0));

    let mut bytes = head(&addr, "/api/chat", "Transfer-Encoding: chunked");
    bytes.extend(chunk(b"{\"model\":\"test-chunked\","));
    bytes.extend(b"100\r\n\"messages\":[");
    cut_and_check(
        &agent,
        &fake,
        "cut inside a chunk",
        Some("test-chunked:latest"),
        true,
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
    cut_and_check(&agent, &fake, "blob upload cut", None, true, &bytes).await;
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
    // A blob endpoint that reads the body as it comes (counting it) and answers 201 at its end.
    let backend = RawBackend::start(|mut conn: Conn| async move {
        let Some(head) = conn.read_head().await else {
            return;
        };
        if conn.skip_body(&head).await.is_some() {
            conn.say(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    })
    .await;
    let agent = agent(&backend.url(), "timeout = \"2s\"\npassive = true").await;
    let digest: String = std::iter::repeat_n('c', 64).collect();
    let total = 30 * 64 * 1024;
    // 30 pieces, each sent once the backend has the previous one and 100 ms more: the upload
    // lasts longer than 3 s (so longer than the timeout) while no gap comes near 2 s.
    let (answer, took) = upload(agent.addr(), &digest, total, false, Some(&backend)).await;
    assert_eq!(
        answer.status, 201,
        "a 3 s upload with timeout = 2s: {answer:?}"
    );
    assert_eq!(backend.body_bytes(), total);
    assert_eq!(backend.requests(), 1);
    assert!(took >= 30 * PACE, "{took:?}");
}
