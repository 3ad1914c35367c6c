//! Raw TCP on both sides of the agent, for what a well-behaved HTTP library will not do:
//! a scripted backend ([`RawBackend`]: one handler per connection, counters for what it saw)
//! and a raw client exchange ([`exchange`]: send bytes, get the parsed answer).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{wait_until, WAIT};

/// What a [`RawBackend`] saw, shared with its connections.
#[derive(Debug, Default)]
pub struct Counts {
    pub accepted: AtomicUsize,
    /// Request heads read whole.
    pub requests: AtomicUsize,
    /// Connections whose peer went away while the handler still held them.
    pub disconnects: AtomicUsize,
    /// Request body bytes read, counted as they arrive.
    pub body_bytes: AtomicU64,
}

/// A backend on raw TCP: every accepted connection runs `handler`. Dropping it stops the
/// listener and every connection it still holds.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub async fn start<F, Fut>(handler: F) -> RawBackend
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        RawBackend::start_on("127.0.0.1:0", handler).await
    }

    /// Listens on `addr` (`127.0.0.2:0` stands for "another host").
    pub async fn start_on<F, Fut>(addr: &str, handler: F) -> RawBackend
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = sock.set_nodelay(true);
                conns.spawn(handler(Conn {
                    sock,
                    buf: Vec::new(),
                    counts: shared.clone(),
                }));
                while conns.try_join_next().is_some() {}
            }
        });
        RawBackend { addr, counts, task }
    }

    /// A backend that accepts connections and never reads or answers.
    pub async fn silent() -> RawBackend {
        RawBackend::start(|conn| async move { conn.closed().await }).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }

    pub fn disconnects(&self) -> usize {
        self.counts.disconnects.load(Ordering::SeqCst)
    }

    pub fn body_bytes(&self) -> u64 {
        self.counts.body_bytes.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds of this backend's counters.
    pub async fn wait(&self, what: &str, pred: impl Fn(&RawBackend) -> bool) {
        wait_until(what, || pred(self)).await
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request head read off a [`Conn`].
#[derive(Debug, Clone)]
pub struct Head {
    /// The head as sent, up to and including the blank line.
    pub text: String,
    pub method: String,
    pub target: String,
}

impl Head {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.text, name)
    }

    /// The value of `key` in the target's query string.
    pub fn query(&self, key: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"))
    }
}

/// The first value of header `name` in an HTTP head (request or status line first).
fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One accepted connection of a [`RawBackend`].
pub struct Conn {
    sock: TcpStream,
    /// Bytes read past what was consumed.
    buf: Vec<u8>,
    counts: Arc<Counts>,
}

impl Conn {
    /// Reads more into `buf`; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.sock.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads up to and including `\r\n`; `None` if the peer went away first.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Some(self.buf.drain(..i + 2).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads `n` bytes, counting them as body bytes; `keep` decides whether they are returned.
    async fn body_part(&mut self, mut n: u64, keep: bool, out: &mut Vec<u8>) -> Option<()> {
        while n > 0 {
            if self.buf.is_empty() && !self.fill().await {
                return None;
            }
            let take = (n as usize).min(self.buf.len());
            self.counts
                .body_bytes
                .fetch_add(take as u64, Ordering::SeqCst);
            if keep {
                out.extend_from_slice(&self.buf[..take]);
            }
            self.buf.drain(..take);
            n -= take as u64;
        }
        Some(())
    }

    /// Reads a request head; counts it. `None` if the peer closed first.
    pub async fn read_head(&mut self) -> Option<Head> {
        let mut text = self.line().await?;
        while !text.ends_with(b"\r\n\r\n") {
            text.extend(self.line().await?);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let mut first = text.split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default().to_string();
        self.counts.requests.fetch_add(1, Ordering::SeqCst);
        Some(Head {
            text,
            method,
            target,
        })
    }

    /// Reads the body `head` announces (sized or chunked); `None` if it broke off.
    pub async fn read_body(&mut self, head: &Head) -> Option<Vec<u8>> {
        self.body(head, true).await
    }

    /// Reads and discards the body `head` announces, counting its bytes; its length.
    pub async fn skip_body(&mut self, head: &Head) -> Option<u64> {
        let before = self.counts.body_bytes.load(Ordering::SeqCst);
        self.body(head, false).await?;
        Some(self.counts.body_bytes.load(Ordering::SeqCst) - before)
    }

    async fn body(&mut self, head: &Head, keep: bool) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if !head.chunked() {
            self.body_part(head.content_length(), keep, &mut out)
                .await?;
            return Some(out);
        }
        loop {
            let line = self.line().await?;
            let size = std::str::from_utf8(&line).ok()?.trim_end();
            let size = u64::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers (none expected) and the final blank line.
                while self.line().await? != b"\r\n" {}
                return Some(out);
            }
            self.body_part(size, keep, &mut out).await?;
            if self.line().await? != b"\r\n" {
                return None;
            }
        }
    }

    /// Reads a request head and its body.
    pub async fn read_request(&mut self) -> Option<(Head, Vec<u8>)> {
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        Some((head, body))
    }

    /// Writes `bytes`; false (and one disconnect counted) if the peer is gone.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        let ok = self.sock.write_all(bytes).await.is_ok() && self.sock.flush().await.is_ok();
        if !ok {
            self.counts.disconnects.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }

    /// Writes `bytes` and closes the connection.
    pub async fn say(mut self, bytes: &[u8]) {
        if self.write(bytes).await {
            let _ = self.sock.shutdown().await;
        }
    }

    /// Holds the connection, reading and discarding, until the peer goes away; counts that
    /// as a disconnect.
    pub async fn closed(mut self) {
        self.wait_closed().await;
    }

    /// Like [`Self::closed`], keeping the connection for writes (use inside `select!`).
    pub async fn wait_closed(&mut self) {
        self.buf.clear();
        while self.fill().await {
            self.buf.clear();
        }
        self.counts.disconnects.fetch_add(1, Ordering::SeqCst);
    }

    /// The socket itself, for the rare script that needs it (a reset, say).
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }
}

// ---------------------------------------------------------------------------------------------
// Answers, as bytes a backend writes
// ---------------------------------------------------------------------------------------------

/// A `200 OK` with a sized body.
pub fn sized(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The head of a `200 OK` with a chunked body, plus `extra` header lines (each ending `\r\n`).
pub fn chunked_head(content_type: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes()
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A whole `200 OK` with `parts` as the chunks of a body that ends cleanly.
pub fn chunked(content_type: &str, parts: &[&str]) -> Vec<u8> {
    let mut out = chunked_head(content_type, "");
    for p in parts {
        out.extend(chunk(p.as_bytes()));
    }
    out.extend_from_slice(LAST_CHUNK);
    out
}

// ---------------------------------------------------------------------------------------------
// The client side: send bytes, get the parsed answer
// ---------------------------------------------------------------------------------------------

/// An HTTP answer read off a raw socket.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    /// The head as received, up to and including the blank line.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("head", &self.head)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.head, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the answer when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }

    /// The `error` string of an answer in Ollama's error shape; panics when it is not one.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string: {self:?}"))
            .to_string()
    }
}

/// Connects to `addr`, writes `request` (a failed write is ignored: the agent may answer and
/// close before it has read everything), and reads one answer.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let _ = sock.write_all(request).await;
    read_answer(&mut sock).await
}

/// Like [`exchange`], writing `parts` one at a time with `between` awaited in between.
pub async fn exchange_parts<F, Fut>(addr: SocketAddr, parts: &[Vec<u8>], mut between: F) -> Answer
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            between(i).await;
        }
        if sock.write_all(p).await.is_err() {
            break;
        }
    }
    read_answer(&mut sock).await
}

/// Reads one answer: its head, then a body by `Content-Length`, by chunks, or to the end of
/// the connection. Panics if the head does not arrive within [`WAIT`].
pub async fn read_answer(sock: &mut TcpStream) -> Answer {
    tokio::time::timeout(WAIT, read_answer_inner(sock))
        .await
        .unwrap_or_else(|_| panic!("no whole answer within {WAIT:?}"))
}

async fn read_answer_inner(sock: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !read_more(sock, &mut buf).await {
            panic!(
                "the connection ended before a whole answer head: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
    let mut answer = Answer {
        status,
        head,
        body: Vec::new(),
    };
    let mut rest = buf.split_off(head_end);
    let chunked = answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let len = answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if chunked {
        while dechunk(&rest).is_none() && read_more(sock, &mut rest).await {}
        answer.body = dechunk(&rest).unwrap_or_else(|| {
            panic!(
                "a chunked body that never ended: {:?}",
                String::from_utf8_lossy(&rest)
            )
        });
    } else if let Some(len) = len {
        while rest.len() < len && read_more(sock, &mut rest).await {}
        rest.truncate(len);
        answer.body = rest;
    } else if status >= 200 && status != 204 && status != 304 {
        while read_more(sock, &mut rest).await {}
        answer.body = rest;
    }
    answer
}

/// Reads more bytes into `buf`; false at the end of the connection (or an error).
async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match sock.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// The de-chunked body, or `None` while the last chunk has not arrived.
pub fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        data = &data[eol + 2..];
        if size == 0 {
            return data.starts_with(b"\r\n").then_some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
