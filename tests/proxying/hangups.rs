//! Client hang-ups at every point cancel the upstream request, count once as `client_aborted` and leave nothing behind.

use crate::common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::{chunk, chunked_head, Conn, RawBackend};
use common::{
    agent_and_fake, metrics_at, proc_stats, wait_metrics, wait_until, Binary, Metrics, WAIT as T,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The request of `model` was recorded exactly once, as `client_aborted`; nothing in flight.
fn assert_one_client_abort(m: &Metrics, model: &str) {
    let ep = "ollama_endpoint_requests_total";
    let mine = [("model", model)];
    assert_eq!(m.sum(ep, &mine), 1.0, "not recorded exactly once:\n{}", m.0);
    assert_eq!(
        m.sum(ep, &[("model", model), ("outcome", "client_aborted")]),
        1.0,
        "not recorded as client_aborted:\n{}",
        m.0
    );
    assert_eq!(m.get("ollama_requests_total", &mine), Some(1.0));
    assert_eq!(m.get("ollama_requests_failed", &mine), Some(1.0));
    assert_eq!(m.value("ollama_requests_success", &mine), 0.0);
    assert_eq!(m.sum("ollama_requests_in_flight", &[]), 0.0, "{}", m.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_request_body_before_the_model_is_known_is_one_client_abort() {
    let (agent, fake) = agent_and_fake().await;
    let mut sock = TcpStream::connect(agent.addrs[0]).await.unwrap();
    sock.write_all(
        b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    drop(sock);
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    // Nothing named a model: the request is counted under `unknown`, and never left the agent.
    assert_one_client_abort(&m, "unknown");
    assert_eq!(fake.stats().requests, 0, "{:?}", fake.stats().paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_request_body_after_the_model_is_known_cancels_the_upstream_request() {
    let (agent, fake) = agent_and_fake().await;
    // One whole request first: the passive agent now knows the backend is up.
    let ok = reqwest::Client::new()
        .post(format!("{}/api/generate", agent.url()))
        .body(r#"{"model":"gemma3:1b","prompt":"hi","stream":false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    ok.bytes().await.unwrap();
    let answered = fake.stats().eval_tokens_sent;
    let mut sock = TcpStream::connect(agent.addrs[0]).await.unwrap();
    sock.write_all(
        b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"model\":\"llama3.2\",\"prompt\":\"",
    )
    .await
    .unwrap();
    // The agent learnt the model and started the upstream request.
    fake.wait_until(T, |s| s.requests == 2).await;
    drop(sock);
    let m = wait_metrics(&agent.url(), |m| {
        m.sum(
            "ollama_endpoint_requests_total",
            &[("model", "llama3.2:latest")],
        ) >= 1.0
    })
    .await;
    assert_one_client_abort(&m, "llama3.2:latest");
    // The backend never got a whole request, so it never answered one; it is not down.
    assert_eq!(fake.stats().eval_tokens_sent, answered);
    assert_eq!(
        m.get("ollama_up", &[]),
        Some(1.0),
        "a client hang-up marked the backend down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_while_waiting_for_the_first_token_cancels_the_upstream_request() {
    let (agent, fake) = agent_and_fake().await;
    let url = agent.url();
    let client = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/api/generate"))
            .body(r#"{"model":"llama3.2","prompt":"slow [[first_delay:600000]]"}"#)
            .send()
            .await
    });
    // The request reached the backend, which is now "loading the model" for ten minutes: the
    // agent is waiting for the first token. The client goes.
    fake.wait_until(T, |s| s.requests == 1).await;
    client.abort();
    let _ = client.await;
    fake.wait_until(T, |s| s.disconnects >= 1).await;
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    assert_one_client_abort(&m, "llama3.2:latest");
    assert_eq!(fake.stats().eval_tokens_sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_stream_cancels_the_upstream_request() {
    let (agent, fake) = agent_and_fake().await;
    let mut res = reqwest::Client::new()
        .post(format!("{}/api/chat", agent.url()))
        .body(
            r#"{"model":"llama3.2","messages":[{"role":"user","content":"long [[tokens:500]] [[delay:20]]"}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"{\"model\":\"llama3.2\""));
    let during = metrics_at(&agent.url()).await;
    assert_eq!(
        during.sum("ollama_requests_in_flight", &[]),
        1.0,
        "{}",
        during.0
    );
    drop(res);
    fake.wait_until(T, |s| s.disconnects >= 1).await;
    let m = wait_metrics(&agent.url(), |m| {
        m.sum("ollama_endpoint_requests_total", &[]) >= 1.0
    })
    .await;
    assert_one_client_abort(&m, "llama3.2:latest");
}

// ---------------------------------------------------------------------------------------------
// A thousand hang-ups against the real binary
// ---------------------------------------------------------------------------------------------

/// Where a client of the storm hangs up.
#[derive(Clone, Copy, Debug)]
enum At {
    /// Mid-body, before the model name: the request never leaves the agent.
    Body,
    /// After the whole request, while the backend has not answered yet.
    FirstToken,
    /// After the first streamed line.
    Stream,
}

/// A backend that records each request's `?id=` as soon as its head arrives, then holds it:
/// `at=Stream` gets the answer's head and a line every 20 ms, the others nothing. Its
/// `disconnects` count the connections the agent closed on it.
struct HoldBackend {
    raw: RawBackend,
    seen: Arc<Mutex<HashSet<u64>>>,
}

impl HoldBackend {
    async fn start() -> HoldBackend {
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let s = seen.clone();
        let raw = RawBackend::start(move |conn| hold(conn, s.clone())).await;
        HoldBackend { raw, seen }
    }

    fn disconnects(&self) -> usize {
        self.raw.disconnects()
    }

    /// Waits until the request `id` reached the backend.
    async fn wait_seen(&self, id: u64) {
        wait_until(&format!("request {id} reaches the backend"), || {
            self.seen.lock().unwrap().contains(&id)
        })
        .await
    }
}

async fn hold(mut conn: Conn, seen: Arc<Mutex<HashSet<u64>>>) {
    let Some(head) = conn.read_head().await else {
        return;
    };
    let id: u64 = head
        .query("id")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    let stream = head.query("at") == Some("Stream");
    seen.lock().unwrap().insert(id);
    let line = chunk(b"{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n");
    if !stream {
        // Reads (and drops) whatever comes until the agent closes the connection.
        return conn.closed().await;
    }
    if !conn
        .write(&[chunked_head("application/x-ndjson", ""), line.clone()].concat())
        .await
    {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = conn.wait_closed() => return,
            _ = tick.tick() => if !conn.write(&line).await { return },
        }
    }
}

/// One client of the storm: sends request `id` and hangs up at `at`.
async fn hang_up(agent: SocketAddr, backend: &HoldBackend, id: u64, at: At) {
    let mut sock = TcpStream::connect(agent).await.unwrap();
    let head = |len: usize| {
        format!("POST /api/generate?id={id}&at={at:?} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n")
    };
    match at {
        At::Body => {
            sock.write_all(format!("{}{{\"model\":", head(1000)).as_bytes())
                .await
                .unwrap();
        }
        At::FirstToken | At::Stream => {
            let body = r#"{"model":"m","prompt":"hi"}"#;
            sock.write_all(format!("{}{body}", head(body.len())).as_bytes())
                .await
                .unwrap();
            backend.wait_seen(id).await;
        }
    }
    if let At::Stream = at {
        // Read the answer's head and its first line.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(11).any(|w| w == b"\"done\":fals") {
            let n = tokio::time::timeout(T, sock.read(&mut buf))
                .await
                .expect("the first line arrives")
                .unwrap();
            assert!(
                n > 0,
                "answer ended early: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }
    drop(sock);
}

/// `count` hang-ups with ids from `first`, 50 at a time, cycling through the points.
async fn storm(agent: SocketAddr, backend: &Arc<HoldBackend>, first: u64, count: u64) {
    let gate = Arc::new(Semaphore::new(50));
    let mut tasks = JoinSet::new();
    for id in first..first + count {
        let at = [At::Body, At::FirstToken, At::Stream][(id % 3) as usize];
        let permit = gate.clone().acquire_owned().await.unwrap();
        let backend = backend.clone();
        tasks.spawn(async move {
            hang_up(agent, &backend, id, at).await;
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// Hang-ups that reach the backend among ids `0..n` (all but `At::Body`).
fn forwarded(n: u64) -> usize {
    (0..n).filter(|id| id % 3 != 0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hang_ups_leave_no_socket_thread_or_memory_behind_and_count_exactly() {
    let backend = Arc::new(HoldBackend::start().await);
    let mut agent = Binary::single(&backend.raw.url(), "passive = true").await;
    let pid = agent.pid();
    let addr = agent.addr();
    let url = agent.url();
    let aborted = |m: &Metrics| {
        m.sum(
            "ollama_endpoint_requests_total",
            &[("outcome", "client_aborted")],
        )
    };

    // Warm-up: the runtime, the allocator and the metric series reach their steady size.
    const WARM: u64 = 60;
    storm(addr, &backend, 0, WARM).await;
    wait_metrics(&url, |m| {
        aborted(m) == WARM as f64 && m.sum("ollama_requests_total", &[]) == WARM as f64
    })
    .await;
    wait_until("the warm-up's upstream requests are cancelled", || {
        backend.disconnects() == forwarded(WARM)
    })
    .await;
    let before = proc_stats(pid);

    const N: u64 = 1000;
    storm(addr, &backend, WARM, N).await;
    // One scrape is not atomic across families: wait until each has seen every record.
    let all = (WARM + N) as f64;
    wait_metrics(&url, |m| {
        aborted(m) >= all
            && m.sum("ollama_requests_total", &[]) >= all
            && m.sum("ollama_requests_failed", &[]) >= all
    })
    .await;
    wait_until("every forwarded hang-up is cancelled upstream", || {
        backend.disconnects() >= forwarded(WARM + N)
    })
    .await;
    // Every socket of the storm is closed again (a little slack for the scrapes' own).
    wait_until("the storm's sockets are closed", || {
        proc_stats(pid).fds <= before.fds + 2
    })
    .await;
    let m = metrics_at(&url).await;
    let after = proc_stats(pid);
    let figures = format!(
        "fds {} → {}, threads {} → {}, VmRSS {} → {} kB, VmHWM {} → {} kB",
        before.fds,
        after.fds,
        before.threads,
        after.threads,
        before.rss_kb,
        after.rss_kb,
        before.hwm_kb,
        after.hwm_kb
    );
    eprintln!("{N} hang-ups: {figures}");

    // Counted exactly: every hang-up once, as client_aborted, and nothing else.
    let ep = "ollama_endpoint_requests_total";
    assert_eq!(aborted(&m), (WARM + N) as f64, "{figures}\n{}", m.0);
    assert_eq!(m.sum(ep, &[]), (WARM + N) as f64, "{}", m.0);
    assert_eq!(m.sum("ollama_requests_total", &[]), (WARM + N) as f64);
    assert_eq!(m.sum("ollama_requests_failed", &[]), (WARM + N) as f64);
    assert_eq!(m.sum("ollama_requests_success", &[]), 0.0);
    assert_eq!(m.sum("ollama_requests_in_flight", &[]), 0.0, "{}", m.0);
    // Every forwarded request was cancelled upstream: the backend saw each connection close.
    assert_eq!(backend.disconnects(), forwarded(WARM + N));
    // Nothing left behind.
    assert!(after.threads <= before.threads, "threads grew: {figures}");
    assert!(after.fds <= before.fds + 2, "sockets left open: {figures}");
    assert!(
        after.rss_kb <= before.rss_kb + 16 * 1024,
        "RSS grew by more than 16 MB: {figures}"
    );
    agent.assert_healthy();
}
