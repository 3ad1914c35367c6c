//! The proxy is transparent: status, headers, bytes and chunk cadence reach the client as the
//! backend sent them, every method and path is forwarded, and only `ollama_url` is contacted.

mod common;

use std::time::Duration;

use common::fake_ollama::FakeOllama;
use common::{ConfDir, InProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers one request with a scripted chunked response: each part is written
/// as its own HTTP chunk after `gap`. Returns its URL and the request head it received.
async fn scripted_backend(
    parts: Vec<&'static str>,
    gap: Duration,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let head = read_head(&mut sock).await;
        sock.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nX-Backend: scripted\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        for p in parts {
            tokio::time::sleep(gap).await;
            let chunk = format!("{:x}\r\n{p}\r\n", p.len());
            sock.write_all(chunk.as_bytes()).await.unwrap();
            sock.flush().await.unwrap();
        }
        sock.write_all(b"0\r\n\r\n").await.unwrap();
        head
    });
    (url, task)
}

/// Reads an HTTP request head (and a small body announced by Content-Length).
async fn read_head(sock: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await.unwrap();
    head
}

#[tokio::test]
async fn stream_chunks_arrive_one_by_one_and_byte_exact() {
    let parts = vec![
        "{\"model\":\"m\",\"response\":\"The\",\"done\":false}\n",
        "{\"model\":\"m\",\"resp",
        "onse\":\" sky\",\"done\":false}\n{\"model\":\"m\",\"response\":\"\",\"done\":true,\"eval_count\":2}\n",
    ];
    let (backend, head) = scripted_backend(parts.clone(), Duration::from_millis(150)).await;
    // Passive: the agent's own backend check would take the scripted backend's one answer.
    let agent = InProcess::start(ConfDir::single(&backend, "passive = true")).await;
    let mut res = reqwest::Client::new()
        .post(format!("{}/api/generate", agent.url()))
        .body(r#"{"model":"m","prompt":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    assert_eq!(res.headers()["x-backend"], "scripted");
    let mut got = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        got.push(String::from_utf8(chunk.to_vec()).unwrap());
    }
    // Each backend chunk is its own chunk at the client: nothing was gathered up.
    assert_eq!(got, parts);
    let head = head.await.unwrap();
    assert!(
        head.starts_with("POST /api/generate HTTP/1.1\r\n"),
        "{head}"
    );
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_requests_success", &[("model", "m:latest")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("ollama_tokens_generated_total", &[("model", "m:latest")]),
        Some(2.0)
    );
}

#[tokio::test]
async fn host_header_is_rewritten_to_the_backend() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let res = reqwest::Client::new()
        .get(format!("{}/api/version", agent.url()))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), r#"{"version":"0.12.6"}"#);
    assert_eq!(
        fake.stats().host_headers.last().unwrap(),
        &fake.addr.to_string()
    );
}

#[tokio::test]
async fn every_method_and_path_is_forwarded() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let c = reqwest::Client::new();
    let base = agent.url();

    let root = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "Ollama is running");

    let head = c.head(format!("{base}/api/version")).send().await.unwrap();
    assert_eq!(head.status(), 200);

    let unknown = c
        .get(format!("{base}/no/such/path?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.text().await.unwrap(), "404 page not found");

    let del = c
        .delete(format!("{base}/api/delete"))
        .body(r#"{"model":"nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);

    let blob = vec![7u8; 3 * 1024 * 1024];
    let up = c
        .post(format!("{base}/api/blobs/sha256:{}", "0".repeat(64)))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);

    let pull = c
        .post(format!("{base}/api/pull"))
        .body(r#"{"model":"llama3.2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(pull.headers()["content-type"], "application/x-ndjson");
    let text = pull.text().await.unwrap();
    assert!(text.lines().last().unwrap().contains("success"), "{text}");

    let paths = fake.stats().paths;
    for want in [
        "GET /",
        "HEAD /api/version",
        "GET /no/such/path?x=1",
        "DELETE /api/delete",
        "POST /api/pull",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
    }
    assert!(fake.stats().bodies_bytes >= 3 * 1024 * 1024);
    // None of this is inference: no model series.
    assert_eq!(
        agent.metrics().await.get("ollama_requests_total", &[]),
        None
    );
}

#[tokio::test]
async fn absolute_uri_requests_never_leave_for_another_host() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let mut sock = TcpStream::connect(agent.addrs[0]).await.unwrap();
    sock.write_all(b"GET http://127.0.0.2:9/api/version HTTP/1.1\r\nHost: 127.0.0.2:9\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("{\"error\":"), "{answer}");
    assert_eq!(fake.stats().requests, 0);
}

#[tokio::test]
async fn unreachable_backend_is_a_502_in_ollama_error_shape_and_a_failure() {
    let port = common::free_port();
    let agent = InProcess::single(&format!("http://127.0.0.1:{port}")).await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/chat", agent.url()))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_requests_failed", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
    // The agent keeps serving.
    let health = reqwest::get(format!("{}/health", agent.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
}

#[tokio::test]
async fn slow_non_inference_answer_is_a_504() {
    // A backend that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut socks = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            socks.push(s);
        }
    });
    let agent = InProcess::start(ConfDir::new(
        "[global]\ninterval = 60\n",
        &format!("[[instances]]\nollama_url = \"{url}\"\nproxy_listen_addr = \"127.0.0.1:0\"\ntimeout = \"300ms\"\n"),
    ))
    .await;
    let res = reqwest::get(format!("{}/api/tags", agent.url()))
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("did not answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_stream_cancels_the_upstream_request() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let mut res = reqwest::Client::new()
        .post(format!("{}/api/generate", agent.url()))
        .body(r#"{"model":"llama3.2","prompt":"long one [[tokens:200]] [[delay:20]]"}"#)
        .send()
        .await
        .unwrap();
    let first = res.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"{\"model\":\"llama3.2\""));
    drop(res);
    // The backend sees its client (the agent) go away.
    fake.wait_until(Duration::from_secs(5), |s| s.disconnects == 1)
        .await;
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_requests_total", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("ollama_requests_failed", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_longer_than_timeout_is_cut_and_failed() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::new(
        "[global]\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\ntimeout = \"300ms\"\n",
            fake.url()
        ),
    ))
    .await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/chat", agent.url()))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"[[hang]]"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The body ends in an error at the client: a cut stream, not a clean end.
    assert!(res.bytes().await.is_err());
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_requests_failed", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_for_the_first_token_is_not_cut_by_timeout() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::new(
        "[global]\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\ntimeout = \"200ms\"\n",
            fake.url()
        ),
    ))
    .await;
    // The first line comes after 3 × timeout (a model load, say); then tokens flow.
    let res = reqwest::Client::new()
        .post(format!("{}/api/generate", agent.url()))
        .body(r#"{"model":"llama3.2","prompt":"slow start [[first_delay:600]]","stream":false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_requests_success", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
}
