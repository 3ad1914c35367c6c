//! The backend side of the proxy: sequential requests share one backend connection, whatever
//! their kind; a connection the backend closed while it sat idle is replaced, never turned
//! into a failed request; and what the backend sent at once leaves at once.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::raw::{chunked, sized, Conn, RawBackend};
use common::{wait_until, ConfDir, InProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request on a connection, until the agent closes it: NDJSON streams for
/// `/api/generate`, a small JSON object for everything else.
async fn keep_alive_backend() -> RawBackend {
    RawBackend::start(|mut conn: Conn| async move {
        while let Some((head, _)) = conn.read_request().await {
            let answer = if head.target == "/api/generate" {
                chunked(
                    "application/x-ndjson",
                    &[
                        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
                        "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":1}\n",
                    ],
                )
            } else {
                sized("application/json", r#"{"version":"0.12.6"}"#)
            };
            if !conn.write(&answer).await {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn sequential_requests_of_every_kind_share_one_backend_connection() {
    let backend = keep_alive_backend().await;
    let agent = InProcess::start(ConfDir::single(&backend.url(), "passive = true")).await;
    let client = reqwest::Client::new();
    for i in 0..12 {
        let res = if i % 2 == 0 {
            client
                .post(format!("{}/api/generate", agent.url()))
                .body(r#"{"model":"m","prompt":"x"}"#)
                .send()
                .await
        } else {
            client
                .get(format!("{}/api/version", agent.url()))
                .send()
                .await
        }
        .unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.ends_with("}\n") || text.ends_with('}'), "{text}");
    }
    assert_eq!(backend.requests(), 12);
    assert_eq!(
        backend.accepted(),
        1,
        "every request after the first reused the connection"
    );
    let m = agent.metrics().await;
    assert_eq!(
        m.value("ollama_requests_success", &[("model", "m:latest")]),
        6.0
    );
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_replaced_without_an_error() {
    let closed = Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    // One answer per connection, then a close the agent is not told about in advance (no
    // `Connection: close`): the pooled connection is dead when the next request comes.
    let backend = RawBackend::start(move |mut conn: Conn| {
        let closed = seen.clone();
        async move {
            if conn.read_request().await.is_some() {
                conn.say(&sized("application/json", r#"{"version":"0.12.6"}"#))
                    .await;
                closed.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let agent = InProcess::start(ConfDir::single(&backend.url(), "passive = true")).await;
    let client = reqwest::Client::new();
    for round in 1..=5 {
        let res = client
            .get(format!("{}/api/version", agent.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "round {round}");
        assert_eq!(res.text().await.unwrap(), r#"{"version":"0.12.6"}"#);
        wait_until("the backend closed the connection", || {
            closed.load(Ordering::SeqCst) == round
        })
        .await;
    }
    assert_eq!(backend.accepted(), 5);
}

/// The chunk sizes of a whole chunked body, in order (the last, empty chunk not included).
fn chunk_sizes(mut data: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap(), 16).unwrap();
        if size == 0 {
            return sizes;
        }
        sizes.push(size);
        data = &data[eol + 2 + size + 2..];
    }
}

/// What the backend wrote at once (here: 50 NDJSON lines, each its own HTTP chunk, in one
/// write) is forwarded in one piece, not line by line: the client gets every byte, in order,
/// in far fewer chunks than the backend sent. Nothing is held back to gather more: the
/// streaming tests in transparency.rs see each line alone when the backend sends it alone.
#[tokio::test]
async fn lines_the_backend_sent_together_reach_the_client_together_and_byte_exact() {
    const LINES: usize = 50;
    let lines: Vec<String> = (0..LINES)
        .map(|i| {
            if i + 1 < LINES {
                format!("{{\"model\":\"m\",\"response\":\"t{i}\",\"done\":false}}\n")
            } else {
                "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":49}\n".to_string()
            }
        })
        .collect();
    let parts: Vec<&'static str> = lines.iter().map(|l| &*l.clone().leak()).collect();
    let backend = RawBackend::start(move |mut conn: Conn| {
        let parts = parts.clone();
        async move {
            if conn.read_request().await.is_some() {
                conn.say(&chunked("application/x-ndjson", &parts)).await;
            }
        }
    })
    .await;
    let agent = InProcess::start(ConfDir::single(&backend.url(), "passive = true")).await;
    let mut sock = tokio::net::TcpStream::connect(agent.addrs[0])
        .await
        .unwrap();
    let body = r#"{"model":"m","prompt":"x"}"#;
    let request = format!(
        "POST /api/generate HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let head_end = loop {
        let mut buf = [0u8; 16 * 1024];
        let n = sock.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the answer ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        if common::raw::dechunk(&got[head_end + 4..]).is_some() {
            break head_end + 4;
        }
    };
    assert_eq!(
        common::raw::dechunk(&got[head_end..]).unwrap(),
        lines.concat().as_bytes()
    );
    let sizes = chunk_sizes(&got[head_end..]);
    assert!(
        sizes.len() <= 3,
        "{LINES} lines written at once left in {} chunks: {sizes:?}",
        sizes.len()
    );
    let m = agent.metrics().await;
    assert_eq!(
        m.value("ollama_tokens_generated_total", &[("model", "m:latest")]),
        49.0,
        "{}",
        m.0
    );
}
