//! Open-proxy and smuggling attempts: only `ollama_url` is ever contacted and each gets a clear 4xx.

use crate::common;

use common::raw::{exchange as raw, read_answer, RawBackend};
use common::{agent_and_fake, WAIT as T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A listener on another loopback address standing for "another host": counts what it accepts.
async fn other_host() -> RawBackend {
    RawBackend::start_on("127.0.0.2:0", |conn| conn.closed()).await
}

#[tokio::test]
async fn absolute_form_requests_get_400_and_reach_neither_the_other_host_nor_the_backend() {
    let (agent, fake) = agent_and_fake().await;
    let other = other_host().await;
    let o = other.addr;
    let b = fake.addr;
    let body = r#"{"model":"llama3.2","prompt":"hi"}"#;
    let requests = [
        format!("GET http://{o}/api/version HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n"),
        format!("GET http://{o}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        format!(
            "POST http://{o}/api/generate HTTP/1.1\r\nHost: {o}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        format!("GET https://{o}/api/tags HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n"),
        format!("GET http://{o}/api/tags HTTP/1.0\r\n\r\n"),
        // Even the backend's own address, spelled as a URL, is not a way in.
        format!("GET http://{b}/api/tags HTTP/1.1\r\nHost: {b}\r\nConnection: close\r\n\r\n"),
    ];
    for req in &requests {
        let a = raw(agent.addrs[0], req.as_bytes()).await;
        assert_eq!(a.status, 400, "{req:?} → {a:?}");
        assert!(!a.error().is_empty(), "{req:?} → {a:?}");
    }
    assert_eq!(other.accepted(), 0, "the other host was contacted");
    assert_eq!(fake.stats().requests, 0, "{:?}", fake.stats().paths);
    // Metered paths spelled as URLs are not metered either: they were never forwarded.
    assert_eq!(
        agent.metrics().await.get("ollama_requests_total", &[]),
        None
    );
}

#[tokio::test]
async fn connect_gets_400_and_opens_no_tunnel() {
    let (agent, fake) = agent_and_fake().await;
    let other = other_host().await;
    let o = other.addr;
    for target in [o.to_string(), "127.0.0.2:443".to_string()] {
        let mut sock = TcpStream::connect(agent.addrs[0]).await.unwrap();
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let a = read_answer(&mut sock).await;
        assert_eq!(a.status, 400, "{req:?} → {a:?}");
        assert!(!a.error().is_empty(), "{a:?}");
        // Whatever comes next on that connection is HTTP to the agent, never tunnelled bytes.
        let _ = sock
            .write_all(b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(T, sock.read_to_end(&mut rest)).await;
    }
    assert_eq!(other.accepted(), 0, "CONNECT reached the other host");
    let paths = fake.stats().paths;
    assert!(
        paths.iter().all(|p| !p.starts_with("CONNECT")),
        "CONNECT reached the backend: {paths:?}"
    );
}

#[tokio::test]
async fn conflicting_or_malformed_framing_gets_400_and_never_reaches_the_backend() {
    let (agent, fake) = agent_and_fake().await;
    let body = r#"{"model":"llama3.2","prompt":"hi"}"#;
    let n = body.len();
    let cases = [
        (
            "two different Content-Lengths",
            format!(
                "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nContent-Length: {}\r\n\r\n{body}",
                n + 5
            ),
        ),
        (
            "a Content-Length list",
            format!(
                "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {n}, {}\r\n\r\n{body}",
                n + 5
            ),
        ),
        (
            "a Transfer-Encoding that does not end in chunked",
            format!(
                "POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n{body}"
            ),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!(
                "POST /api/generate HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{body}\r\n0\r\n\r\n"
            ),
        ),
        (
            "a negative Content-Length",
            format!("POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{body}"),
        ),
        (
            "whitespace before the header colon",
            format!(
                "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length : {n}\r\n\r\n{body}"
            ),
        ),
    ];
    for (what, req) in &cases {
        let a = raw(agent.addrs[0], req.as_bytes()).await;
        assert_eq!(a.status, 400, "{what}: {a:?}");
    }
    assert_eq!(fake.stats().requests, 0, "{:?}", fake.stats().paths);
}

#[tokio::test]
async fn a_request_hidden_behind_conflicting_framing_never_reaches_the_backend() {
    let (agent, fake) = agent_and_fake().await;
    let body = r#"{"model":"llama3.2","prompt":"hi","stream":false}"#;
    let n = body.len();
    let hidden = "GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // CL.TE: a Content-Length reader would take the chunked terminator as the body's end and
    // the hidden request as the next one; TE.CL: the other way round.
    // Each with the one answer it gets: `Transfer-Encoding` wins over `Content-Length` (the
    // outer request is forwarded, its body de-chunked); two `Content-Length`s are a 400.
    let cases = [
        (200, format!(
            "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{body}\r\n0\r\n\r\n{hidden}",
            n + 10
        )),
        (200, format!(
            "POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{n:x}\r\n{body}\r\n0\r\n\r\n{hidden}"
        )),
        (400, format!(
            "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nContent-Length: {}\r\n\r\n{body}{hidden}",
            n + hidden.len()
        )),
    ];
    for (status, req) in &cases {
        let mut sock = TcpStream::connect(agent.addrs[0]).await.unwrap();
        sock.write_all(req.as_bytes()).await.unwrap();
        // Read everything the agent sends on this connection until it closes it.
        let mut all = Vec::new();
        tokio::time::timeout(T, sock.read_to_end(&mut all))
            .await
            .expect("the agent closes a connection whose framing was ambiguous")
            .unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{req:?} → {text:?}"
        );
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "more than one answer on one ambiguous connection: {text:?}"
        );
    }
    let paths = fake.stats().paths;
    assert!(
        paths.iter().all(|p| !p.contains("smuggled")),
        "a hidden request reached the backend: {paths:?}"
    );
    // Exactly the two outer requests whose framing hyper could settle, never a third.
    assert_eq!(
        paths,
        ["POST /api/generate", "POST /api/generate"],
        "{paths:?}"
    );
}

/// `count` headers `X-Pad-i` of `size` bytes each, on a metered request.
fn padded_request(count: usize, size: usize) -> Vec<u8> {
    let body = r#"{"model":"llama3.2","prompt":"hi","stream":false}"#;
    let mut req = format!(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    let pad = "a".repeat(size);
    for i in 0..count {
        req.push_str(&format!("X-Pad-{i}: {pad}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

#[tokio::test]
async fn an_oversized_header_block_of_many_headers_gets_431_and_never_reaches_the_backend() {
    let (agent, fake) = agent_and_fake().await;
    // 200 headers of 1 KB: 200 KB in all. More than 100 headers: hyper's own parser answers
    // (an empty 431) before the agent sees the request.
    let a = raw(agent.addrs[0], &padded_request(200, 1024)).await;
    assert_eq!(a.status, 431, "{a:?}");
    // 60 headers of 1.2 KB: 72 KB in all, within hyper's limits: the agent's own 431.
    let a = raw(agent.addrs[0], &padded_request(60, 1200)).await;
    assert_eq!(a.status, 431, "{a:?}");
    assert!(a.error().contains("larger than 65536 bytes"), "{a:?}");
    // 1 MB in 16 headers of 64 KB.
    let a = raw(agent.addrs[0], &padded_request(16, 64 * 1024)).await;
    assert_eq!(a.status, 431, "{a:?}");
    assert_eq!(fake.stats().requests, 0, "{:?}", fake.stats().paths);
    // The agent is still there for the next client.
    let ok = raw(
        agent.addrs[0],
        b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test]
async fn a_single_200_kb_header_gets_431_and_never_reaches_the_backend() {
    let (agent, fake) = agent_and_fake().await;
    let a = raw(agent.addrs[0], &padded_request(1, 200 * 1024)).await;
    assert_eq!(a.status, 431, "{}", a.head);
    assert!(a.error().contains("larger than"), "{a:?}");
    assert_eq!(fake.stats().requests, 0, "{:?}", fake.stats().paths);
}

#[tokio::test]
async fn absolute_form_requests_for_the_agents_own_endpoints_get_400_too() {
    let (agent, _fake) = agent_and_fake().await;
    for path in ["/metrics", "/health"] {
        let req = format!("GET http://127.0.0.2:9{path} HTTP/1.1\r\nHost: 127.0.0.2:9\r\nConnection: close\r\n\r\n");
        let a = raw(agent.addrs[0], req.as_bytes()).await;
        assert_eq!(a.status, 400, "{path}: {a:?}");
    }
}
