//! Slow and idle clients cannot hold the agent (issue 19): a client that sends half a request
//! head is answered 408 and closed after `client_header_timeout`, an idle kept-alive one is
//! closed after `keepalive_timeout`, on the proxy port and on `metrics_listen_addr`; neither
//! clock ever cuts a request being served; `max_connections` refuses the connection beyond it
//! with a 503, counts it, and the agent serves again once connections close.
//!
//! The timeouts are 1 s here; every test waits for the event (a read that returns the end of
//! the connection), never for the clock, and the long requests are long by construction.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::binary::Binary;
use common::fake_ollama::FakeOllama;
use common::raw::{read_answer, Conn, RawBackend};
use common::{raise_fd_limit, wait_until, ConfDir, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Short clocks, so that the tests take seconds.
const SHORT: &str = "client_header_timeout = \"1s\"\nkeepalive_timeout = \"1s\"\n";

/// Half-open connections of the first test (`OLLAMA_TAP_SLOW_CLIENTS` overrides it, e.g. to
/// measure the memory of 3,000).
fn slow_clients() -> usize {
    std::env::var("OLLAMA_TAP_SLOW_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Reads until the agent ends the connection and returns what came before (an error, such
/// as a reset, ends it too). Panics if the connection is still open after [`WAIT`].
async fn until_closed(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = sock.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("the agent did not close the connection within {WAIT:?}"));
    got
}

/// A connection that sends a request line and one header line, then nothing.
async fn half_head(addr: SocketAddr) -> TcpStream {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"POST /api/chat HTTP/1.1\r\nHost: agent\r\n")
        .await
        .unwrap();
    sock
}

/// One whole `/api/version` request on `sock`, kept alive; the answer's status.
async fn version(sock: &mut TcpStream) -> u16 {
    sock.write_all(b"GET /api/version HTTP/1.1\r\nHost: agent\r\n\r\n")
        .await
        .unwrap();
    read_answer(sock).await.status
}

/// An ordinary request on a connection of its own (closed after it).
async fn ordinary(addr: SocketAddr) {
    let body = r#"{"model":"llama3.2","prompt":"hi [[tokens:3]]","stream":false}"#;
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/api/generate"))
        .body(body)
        .send()
        .await
        .expect("an ordinary request is answered");
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_half_sent_heads_get_408_and_are_closed_while_ordinary_requests_keep_working() {
    raise_fd_limit();
    let fake = FakeOllama::start().await;
    let extra = format!("{SHORT}passive = true\nmetrics_listen_addr = \"127.0.0.1:0\"");
    let agent = Binary::single(&fake.url(), &extra).await;
    let (proxy, own) = (agent.addr(), agent.metrics_addrs[0]);
    // Warmed up as tests/soak.rs does: a request through the proxy port (its backend pool
    // connection is part of the idle count) and a scrape of the agent's own listener.
    ordinary(proxy).await;
    agent
        .wait_metrics(|m| m.sum("ollama_requests_total", &[]) == 1.0)
        .await;
    let idle = agent.stats();

    let n = slow_clients();
    let mut slow = JoinSet::new();
    for i in 0..n + 10 {
        // the last 10 on the agent's own listener
        let addr = if i < n { proxy } else { own };
        let mut sock = half_head(addr).await;
        slow.spawn(async move { until_closed(&mut sock).await });
    }
    let (mut peak_fds, mut served) = (0, 0);
    while !slow.is_empty() {
        // Ordinary requests are answered all the while.
        peak_fds = peak_fds.max(agent.stats().fds);
        ordinary(proxy).await;
        served += 1;
        while let Some(done) = slow.try_join_next() {
            let said = String::from_utf8_lossy(&done.unwrap()).into_owned();
            assert!(
                said.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
                "{said:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 0);
    let peak = agent.stats();
    let m = agent
        .wait_metrics(|m| m.sum("ollama_tap_connections", &[]) <= 1.0)
        .await;
    assert_eq!(m.sum("ollama_tap_connections_refused_total", &[]), 0.0);
    // Once the backend is gone (the pool's connections with it), the agent holds at most what
    // it held before the first slow client.
    fake.stop().await;
    wait_until("the agent's fds are back to their idle count", || {
        agent.stats().fds <= idle.fds
    })
    .await;
    eprintln!(
        "{n} + 10 half-sent heads, {served} ordinary requests meanwhile: agent fds {} idle, {peak_fds} \
         at the peak; RSS {} kB idle, VmHWM {} kB: {:.1} kB per connection",
        idle.fds,
        idle.rss_kb,
        peak.hwm_kb,
        (peak.hwm_kb.saturating_sub(idle.rss_kb)) as f64 / (n + 10) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_silently_and_a_connection_in_use_never_is() {
    let fake = FakeOllama::start().await;
    // A longer keep-alive than the pause of the busy connection below, by far.
    let extra = "client_header_timeout = \"1s\"\nkeepalive_timeout = \"2s\"\npassive = true\n\
                 metrics_listen_addr = \"127.0.0.1:0\"";
    let agent = Binary::single(&fake.url(), extra).await;
    let mut idle = JoinSet::new();
    for addr in [agent.addr(); 20]
        .into_iter()
        .chain([agent.metrics_addrs[0]])
    {
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let path = if addr == agent.addr() {
            "/api/version"
        } else {
            "/metrics"
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut sock).await.status, 200);
        idle.spawn(async move { until_closed(&mut sock).await });
    }
    // One more connection keeps sending requests until every idle one is closed, and after.
    let mut busy = TcpStream::connect(agent.addr()).await.unwrap();
    let mut requests = 0;
    let mut after = 0;
    while after < 10 {
        assert_eq!(version(&mut busy).await, 200, "request {requests}");
        requests += 1;
        while let Some(done) = idle.try_join_next() {
            assert_eq!(
                done.unwrap(),
                b"",
                "an idle connection is closed without a word"
            );
        }
        if idle.is_empty() {
            after += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(requests > 10);
}

/// A backend for the long requests: a blob upload read as it comes (answered 201 at its end),
/// and `GET /big`: [`BIG`] bytes of [`pattern`].
async fn blob_backend() -> RawBackend {
    RawBackend::start(|mut conn: Conn| async move {
        let Some(head) = conn.read_head().await else {
            return;
        };
        if head.target == "/big" {
            let mut answer =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
            answer.extend(pattern(BIG));
            conn.say(&answer).await;
        } else if conn.skip_body(&head).await.is_some() {
            conn.say(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    })
    .await
}

/// The slow reader's answer size.
const BIG: usize = 1 << 20;
/// The pause between two pieces of the upload and between two reads of the slow reader.
const PACE: Duration = Duration::from_millis(40);

/// Deterministic bytes, different at every offset of a period of 251.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// 64 pieces of 16 KiB, each sent once the backend has the one before and [`PACE`] more:
/// longer than 64 × 40 ms = 2.56 s by construction. The answer's status.
async fn paced_upload(addr: SocketAddr, backend: &RawBackend) -> u16 {
    const PIECE: usize = 16 * 1024;
    let total = 64 * PIECE;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let digest: String = std::iter::repeat_n('d', 64).collect();
    let head = format!(
        "POST /api/blobs/sha256:{digest} HTTP/1.1\r\nHost: agent\r\nContent-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let piece = pattern(PIECE);
    for sent in (PIECE..=total).step_by(PIECE) {
        s.write_all(&piece).await.unwrap();
        let sent = sent as u64;
        wait_until("the backend has the piece", || backend.body_bytes() >= sent).await;
        tokio::time::sleep(PACE).await;
    }
    read_answer(&mut s).await.status
}

/// Reads `GET /big` 16 KiB at a time with [`PACE`] between reads, through a small receive
/// buffer: longer than 64 × 40 ms by construction. The body.
async fn slow_read(addr: SocketAddr) -> Vec<u8> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: agent\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let head_and_body = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the answer was cut after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() - (i + 4) >= BIG {
                break got.split_off(i + 4);
            }
        }
        tokio::time::sleep(PACE).await;
    };
    head_and_body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_an_upload_and_a_slow_reader_longer_than_both_timeouts_arrive_whole() {
    let fake = FakeOllama::start().await;
    let blobs = blob_backend().await;
    let streams = Binary::single(&fake.url(), &format!("{SHORT}passive = true")).await;
    let uploads = Binary::single(&blobs.url(), &format!("{SHORT}passive = true")).await;

    // 30 lines 100 ms apart: longer than 3 s by construction.
    let body = r#"{"model":"llama3.2","prompt":"why [[tokens:30]] [[delay:100]]"}"#;
    let generate = |base: String| async move {
        let res = reqwest::Client::new()
            .post(format!("{base}/api/generate"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        // byte-exact but for the clock in `created_at`
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["created_at"] = serde_json::Value::Null;
                v
            })
            .collect();
        lines
    };
    let (through, direct, uploaded, read) = tokio::join!(
        generate(streams.url()),
        generate(fake.url()),
        paced_upload(uploads.addr(), &blobs),
        slow_read(uploads.addr()),
    );
    assert_eq!(through, direct, "the stream through the agent is Ollama's");
    assert_eq!(through.len(), 31, "30 tokens and the done line");
    assert_eq!(uploaded, 201);
    assert_eq!(blobs.body_bytes(), 64 * 16 * 1024);
    assert!(
        read == pattern(BIG),
        "the slow reader got every byte, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_beyond_max_connections_gets_503_is_counted_and_the_agent_serves_again() {
    let fake = FakeOllama::start().await;
    let extra = "passive = true\nmax_connections = 3\nmetrics_listen_addr = \"127.0.0.1:0\"";
    let agent = Binary::start(ConfDir::single(&fake.url(), extra)).await;
    let proxy = [("listener", "proxy")];
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(agent.addr()).await.unwrap());
    }
    agent
        .wait_metrics(|m| m.value("ollama_tap_connections", &proxy) == 3.0)
        .await;
    for _ in 0..2 {
        let mut refused = TcpStream::connect(agent.addr()).await.unwrap();
        let answer = read_answer(&mut refused).await;
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(
            answer.error().contains("too many connections"),
            "{answer:?}"
        );
        assert_eq!(until_closed(&mut refused).await, b"");
    }
    let m = agent
        .wait_metrics(|m| m.value("ollama_tap_connections_refused_total", &proxy) == 2.0)
        .await;
    assert_eq!(m.value("ollama_tap_connections", &proxy), 3.0);
    let logged = agent.logs().matches("max_connections reached").count();
    assert_eq!(logged, 1, "logged once:\n{}", agent.logs());

    drop(held);
    agent
        .wait_metrics(|m| m.value("ollama_tap_connections", &proxy) == 0.0)
        .await;
    ordinary(agent.addr()).await;
    let mut agent = agent;
    agent.assert_healthy();
}
