//! The proxy is transparent: status, headers, bytes and chunk cadence reach the client as the
//! backend sent them, every method and path is forwarded, and only `ollama_url` is contacted.

use crate::common;

use common::fake_ollama::FakeOllama;
use common::raw::{chunk, chunked_head, exchange, Conn, Head, RawBackend, LAST_CHUNK};
use common::{wait_metrics, ConfDir, InProcess, WAIT};
use tokio::sync::{mpsc, oneshot, Mutex};

/// A backend that answers one request with a scripted chunked response, writing each part as
/// its own HTTP chunk when the test says `next` (so the client has read the previous part: no
/// clock decides whether two parts could be gathered). Returns the backend, the sender of
/// `next`, and the request head it received.
async fn stepped_backend(
    parts: Vec<&'static str>,
) -> (RawBackend, mpsc::Sender<()>, oneshot::Receiver<Head>) {
    let (next_tx, next_rx) = mpsc::channel::<()>(1);
    let (head_tx, head_rx) = oneshot::channel();
    let once = std::sync::Arc::new(Mutex::new(Some((next_rx, head_tx))));
    let backend = RawBackend::start(move |mut conn: Conn| {
        let (once, parts) = (once.clone(), parts.clone());
        async move {
            let Some((mut next, head_tx)) = once.lock().await.take() else {
                return;
            };
            let Some((head, _)) = conn.read_request().await else {
                return;
            };
            let _ = head_tx.send(head);
            let mut out = chunked_head("application/x-ndjson", "X-Backend: scripted\r\n");
            for p in parts {
                if next.recv().await.is_none() {
                    return;
                }
                out.extend(chunk(p.as_bytes()));
                if !conn.write(&out).await {
                    return;
                }
                out.clear();
            }
            conn.say(LAST_CHUNK).await;
        }
    })
    .await;
    (backend, next_tx, head_rx)
}

#[tokio::test]
async fn stream_chunks_arrive_one_by_one_and_byte_exact() {
    let parts = vec![
        "{\"model\":\"m\",\"response\":\"The\",\"done\":false}\n",
        "{\"model\":\"m\",\"resp",
        "onse\":\" sky\",\"done\":false}\n{\"model\":\"m\",\"response\":\"\",\"done\":true,\"eval_count\":2}\n",
    ];
    let (backend, next, head) = stepped_backend(parts.clone()).await;
    // Passive: the agent's own backend check would take the scripted backend's one answer.
    let agent = InProcess::start(ConfDir::single(&backend.url(), "passive = true")).await;
    let client = reqwest::Client::new()
        .post(format!("{}/api/generate", agent.url()))
        .body(r#"{"model":"m","prompt":"hi"}"#)
        .send();
    // The answer's head comes with the first part, as Ollama sends it.
    next.send(()).await.unwrap();
    let mut res = client.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    assert_eq!(res.headers()["x-backend"], "scripted");
    // Each backend chunk reaches the client as it is sent, before the next one exists.
    let mut got = Vec::new();
    for i in 0..parts.len() {
        let chunk = res.chunk().await.unwrap().expect("a chunk");
        got.push(String::from_utf8(chunk.to_vec()).unwrap());
        if i + 1 < parts.len() {
            next.send(()).await.unwrap();
        }
    }
    assert_eq!(got, parts);
    assert!(res.chunk().await.unwrap().is_none(), "a clean end");
    let head = head.await.unwrap();
    assert_eq!(
        (head.method.as_str(), head.target.as_str()),
        ("POST", "/api/generate")
    );
    assert!(
        head.text.starts_with("POST /api/generate HTTP/1.1\r\n"),
        "{head:?}"
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
    // Passive: every request the fake sees is the client's.
    let agent = InProcess::start(ConfDir::single(&fake.url(), "passive = true")).await;
    let res = reqwest::Client::new()
        .get(format!("{}/api/version", agent.url()))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), r#"{"version":"0.12.6"}"#);
    assert_eq!(fake.stats().host_headers, [fake.addr.to_string()]);
}

#[tokio::test]
async fn every_method_and_path_is_forwarded() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(&fake.url(), "passive = true")).await;
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
    let before = fake.stats().bodies_bytes;
    let up = c
        .post(format!("{base}/api/blobs/sha256:{}", "0".repeat(64)))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    assert_eq!(fake.stats().bodies_bytes - before, 3 * 1024 * 1024);

    let pull = c
        .post(format!("{base}/api/pull"))
        .body(r#"{"model":"llama3.2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(pull.headers()["content-type"], "application/x-ndjson");
    let text = pull.text().await.unwrap();
    assert!(text.lines().last().unwrap().contains("success"), "{text}");

    // Exactly these, in this order, and nothing else.
    assert_eq!(
        fake.stats().paths,
        [
            "GET /",
            "HEAD /api/version",
            "GET /no/such/path?x=1",
            "DELETE /api/delete",
            &format!("POST /api/blobs/sha256:{}", "0".repeat(64)),
            "POST /api/pull",
        ]
    );
    // None of this is inference: no model series.
    assert_eq!(
        agent.metrics().await.get("ollama_requests_total", &[]),
        None
    );
}

#[tokio::test]
async fn absolute_uri_requests_never_leave_for_another_host() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(&fake.url(), "passive = true")).await;
    let answer = exchange(
        agent.addrs[0],
        b"GET http://127.0.0.2:9/api/version HTTP/1.1\r\nHost: 127.0.0.2:9\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.error().contains("origin-form"), "{answer:?}");
    assert_eq!(fake.stats().requests, 0);
}

#[tokio::test]
async fn unreachable_backend_is_a_502_in_ollama_error_shape_and_a_failure() {
    let down = common::ClosedPort::new();
    let port = down.port();
    let agent = InProcess::single(&down.url()).await;
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
    let backend = RawBackend::silent().await;
    let url = backend.url();
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
    fake.wait_until(WAIT, |s| s.disconnects == 1).await;
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) == 1.0
    })
    .await;
    assert_eq!(
        m.sum(
            "ollama_endpoint_requests_total",
            &[("outcome", "client_aborted")]
        ),
        1.0,
        "{}",
        m.0
    );
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
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) == 1.0
    })
    .await;
    assert_eq!(
        m.sum("ollama_endpoint_requests_total", &[("outcome", "timeout")]),
        1.0,
        "{}",
        m.0
    );
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
    let v: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(v["done"], true, "{v}");
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) == 1.0
    })
    .await;
    assert_eq!(
        m.get("ollama_requests_success", &[("model", "llama3.2:latest")]),
        Some(1.0)
    );
}
