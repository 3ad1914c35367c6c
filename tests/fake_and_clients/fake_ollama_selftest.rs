//! Self-test of the fake Ollama backend (tests/common/fake_ollama/mod.rs), over real HTTP with a
//! minimal raw HTTP/1.1 client so chunk boundaries and aborted bodies are visible.

use crate::common::fake_ollama;

use std::net::SocketAddr;
use std::time::Duration;

use fake_ollama::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The bound on every wait for an event: generous, as it only ever fails a broken case (the
/// machine may be loaded; a test waits for the event, not for the clock).
const T: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    /// Body chunks as framed on the wire (one element per HTTP chunk), or the whole body.
    chunks: Vec<Vec<u8>>,
    /// False if the connection ended before the body was complete.
    complete: bool,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body()).unwrap()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body()).unwrap()
    }
    fn lines(&self) -> Vec<String> {
        let t = self.text();
        assert!(
            t.is_empty() || t.ends_with('\n'),
            "unterminated line: {t:?}"
        );
        t.lines().map(str::to_string).collect()
    }
    fn sse_data(&self) -> Vec<String> {
        let t = self.text();
        t.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").expect("data: prefix").to_string())
            .collect()
    }
}

async fn send_head(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test.local:1234\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s
}

async fn read_head(r: &mut BufReader<TcpStream>) -> Option<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
        return None;
    }
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some((status, headers))
}

async fn read_body(
    r: &mut BufReader<TcpStream>,
    method: &str,
    headers: &[(String, String)],
) -> (Vec<Vec<u8>>, bool) {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if method == "HEAD" {
        return (vec![], true);
    }
    if get("transfer-encoding").as_deref() == Some("chunked") {
        let mut chunks = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                return (chunks, false);
            }
            let size = usize::from_str_radix(l.trim(), 16).unwrap();
            if size == 0 {
                let mut end = String::new();
                let n = r.read_line(&mut end).await.unwrap_or(0);
                return (chunks, n > 0);
            }
            let mut buf = vec![0; size + 2];
            if r.read_exact(&mut buf).await.is_err() {
                return (chunks, false);
            }
            buf.truncate(size);
            chunks.push(buf);
        }
    }
    let mut buf = Vec::new();
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        buf.resize(len, 0);
        let ok = r.read_exact(&mut buf).await.is_ok();
        return (vec![buf], ok);
    }
    r.read_to_end(&mut buf).await.unwrap();
    (vec![buf], true)
}

/// One request on a fresh connection. A connection closed before any response gives status 0.
async fn req(addr: SocketAddr, method: &str, path: &str, body: &str) -> RawResp {
    tokio::time::timeout(T, async {
        let s = send_head(addr, method, path, body.as_bytes()).await;
        let mut r = BufReader::new(s);
        let Some((status, headers)) = read_head(&mut r).await else {
            return RawResp {
                status: 0,
                headers: vec![],
                chunks: vec![],
                complete: false,
            };
        };
        let (chunks, complete) = read_body(&mut r, method, &headers).await;
        RawResp {
            status,
            headers,
            chunks,
            complete,
        }
    })
    .await
    .expect("request timed out")
}

async fn post(fake: &FakeOllama, path: &str, body: &str) -> RawResp {
    req(fake.addr, "POST", path, body).await
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn basic_routes_and_errors() {
    let fake = FakeOllama::start().await;
    let a = fake.addr;

    let r = req(a, "GET", "/", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Ollama is running"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = req(a, "HEAD", "/", "").await;
    assert_eq!(r.status, 200);
    let r = req(a, "GET", "/api/version", "").await;
    assert_eq!(r.text(), r#"{"version":"0.12.6"}"#);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    let r = req(a, "GET", "/nope?x=1", "").await;
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = req(a, "GET", "/api/generate", "").await;
    assert_eq!(r.status, 405);

    let r = post(&fake, "/api/generate", r#"{"model":"nope","prompt":"hi"}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), r#"{"error":"model 'nope' not found"}"#);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let r = post(&fake, "/api/chat", "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, r#"{"error":"missing request body"}"#)
    );
    let r = post(&fake, "/api/chat", r#"{"messages":[]}"#).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, r#"{"error":"model is required"}"#)
    );
    let r = post(&fake, "/api/generate", "{nope").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            r#"{"error":"invalid character 'n' looking for beginning of object key string"}"#
        )
    );
    let r = post(&fake, "/api/show", r#"{"model":"qwen2.5:0.5b"}"#).await;
    assert_eq!(r.json()["details"]["family"], "qwen2");
    let r = req(a, "DELETE", "/api/delete", r#"{"model":"test-gone"}"#).await;
    assert_eq!((r.status, r.body().len()), (200, 0));
    let r = req(a, "DELETE", "/api/delete", r#"{"model":"other"}"#).await;
    assert_eq!(r.status, 404);

    let tags = req(a, "GET", "/api/tags", "").await.json();
    assert_eq!(tags["models"].as_array().unwrap().len(), KNOWN_MODELS.len());
    let ps = req(a, "GET", "/api/ps", "").await.json();
    assert_eq!(ps["models"][0]["name"], "llama3.2:latest");
    assert_eq!(ps["models"][0]["size_vram"], 3_325_000_000u64);
    let models = req(a, "GET", "/v1/models", "").await.json();
    assert_eq!(models["data"][0]["id"], "llama3.2:latest");

    let r = post(
        &fake,
        "/api/embed",
        r#"{"model":"nomic-embed-text","input":["one two","three"]}"#,
    )
    .await;
    let j = r.json();
    assert_eq!(j["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(j["prompt_eval_count"], 3);
    assert!(r.text().find("\"total_duration\"") < r.text().find("\"load_duration\""));
    let r = post(
        &fake,
        "/api/embeddings",
        r#"{"model":"nomic-embed-text","prompt":"x"}"#,
    )
    .await;
    assert_eq!(r.json()["embedding"].as_array().unwrap().len(), 8);
    let r = post(
        &fake,
        "/v1/embeddings",
        r#"{"model":"test-e","input":"a b c"}"#,
    )
    .await;
    assert_eq!(r.json()["usage"]["prompt_tokens"], 3);
    let r = post(
        &fake,
        "/v1/chat/completions",
        r#"{"model":"zz","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "{\"error\":{\"message\":\"model 'zz' not found\",\"type\":\"not_found_error\",\"param\":null,\"code\":null}}\n"
    );

    let s = fake.stats();
    assert_eq!(s.requests, s.paths.len() as u64);
    assert_eq!(s.paths[0], "GET /");
    assert_eq!(s.paths[2], "GET /api/version");
    assert_eq!(s.paths[3], "GET /nope?x=1");
    assert_eq!(s.host_headers.len(), s.paths.len());
    assert!(s.host_headers.iter().all(|h| h == "test.local:1234"));
    // embed (3) + v1 embeddings (3); generation was never successful above.
    assert_eq!((s.prompt_tokens_sent, s.eval_tokens_sent), (6, 0));
}

#[tokio::test]
async fn generate_stream_default() {
    let fake = FakeOllama::start().await;
    let prompt = "why is the sky blue?";
    let r = post(
        &fake,
        "/api/generate",
        &format!(r#"{{"model":"llama3.2","prompt":"{prompt}"}}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let lines = r.lines();
    assert_eq!(lines.len(), DEFAULT_REPLY_TOKENS + 1);
    // One line per chunk, each flushed separately.
    assert_eq!(r.chunks.len(), lines.len());
    let toks: Vec<String> = lines[..5]
        .iter()
        .map(|l| parse(l)["response"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(toks, reply_tokens(prompt));
    assert_eq!(toks, ["The", " sky", " is", " blue", " because"]);
    let first = parse(&lines[0]);
    assert_eq!(first["done"], false);
    assert!(first.get("eval_count").is_none());
    let created = first["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() > 20, "{created}");

    let last = &lines[5];
    let ca = parse(last)["created_at"].as_str().unwrap().to_string();
    let m = expected_metrics(prompt, None);
    assert_eq!(m.prompt_eval_count, Some(5));
    let want = format!(
        r#"{{"model":"llama3.2","created_at":"{ca}","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":{},"load_duration":2000000,"prompt_eval_count":5,"prompt_eval_duration":5000000,"eval_count":5,"eval_duration":50000000}}"#,
        2_000_000 + 5_000_000 + 50_000_000 + 1_000_000
    );
    assert_eq!(last, &want);
    let s = fake.stats();
    assert_eq!(
        (s.prompt_tokens_sent, s.eval_tokens_sent, s.disconnects),
        (5, 5, 0)
    );
    assert_eq!(
        s.bodies_bytes,
        r#"{"model":"llama3.2","prompt":""}"#.len() as u64 + prompt.len() as u64
    );
}

#[tokio::test]
async fn generate_directives_counts_and_truncation() {
    let fake = FakeOllama::start().await;
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"test-1","prompt":"one [[tokens:3]] two [[load:7]] [[nocounts]]","raw":true}"#,
    )
    .await;
    let lines = r.lines();
    assert_eq!(lines.len(), 4);
    let last = parse(&lines[3]);
    assert_eq!(last["load_duration"], 7_000_000);
    assert!(last.get("prompt_eval_count").is_none() && last.get("eval_count").is_none());
    assert!(last.get("context").is_none());
    assert_eq!(last["eval_duration"], 30_000_000);
    assert_eq!(fake.stats().eval_tokens_sent, 0);

    let r = post(
        &fake,
        "/api/chat",
        r#"{"model":"gemma3:1b","messages":[{"role":"user","content":"a b c"}],"options":{"num_predict":2}}"#,
    )
    .await;
    let lines = r.lines();
    assert_eq!(lines.len(), 3);
    let last = parse(&lines[2]);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 2);
    assert_eq!(
        last["message"],
        serde_json::json!({"role":"assistant","content":""})
    );
    assert_eq!(prompt_tokens("a  b\tc [[tokens:9]]"), 3);
    assert_eq!(reply_tokens("[[tokens:21]]").len(), 21);
}

#[tokio::test]
async fn chat_non_stream() {
    let fake = FakeOllama::start().await;
    let body = r#"{"model":"llama3.2","stream":false,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there [[tokens:7]]"}]}"#;
    let r = post(&fake, "/api/chat", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let text = r.text();
    assert_eq!(
        r.header("content-length"),
        Some(text.len().to_string().as_str())
    );
    let j = r.json();
    let prompt = chat_prompt(&["be brief", "hello there [[tokens:7]]"]);
    assert_eq!(j["message"]["content"], reply_text(&prompt));
    assert_eq!(j["done"], true);
    assert_eq!(j["prompt_eval_count"], 4);
    assert_eq!(j["eval_count"], 7);
    let m = expected_metrics(&prompt, None);
    assert_eq!(j["total_duration"], m.total_duration);
    let order = [
        "\"model\"",
        "\"created_at\"",
        "\"message\"",
        "\"done\"",
        "\"done_reason\"",
        "\"total_duration\"",
        "\"load_duration\"",
        "\"prompt_eval_count\"",
        "\"prompt_eval_duration\"",
        "\"eval_count\"",
        "\"eval_duration\"",
    ];
    let pos: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(!text.ends_with('\n'));
    assert_eq!(
        (
            fake.stats().prompt_tokens_sent,
            fake.stats().eval_tokens_sent
        ),
        (4, 7)
    );
}

#[tokio::test]
async fn load_only_replies() {
    let fake = FakeOllama::start().await;
    let r = post(&fake, "/api/generate", r#"{"model":"llama3.2"}"#).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let j = r.json();
    assert_eq!(
        (j["done"].clone(), j["done_reason"].clone()),
        (true.into(), "load".into())
    );
    assert!(j.get("total_duration").is_none() && j.get("eval_count").is_none());
    let r = post(
        &fake,
        "/api/chat",
        r#"{"model":"llama3.2","messages":[],"keep_alive":0}"#,
    )
    .await;
    assert_eq!(r.json()["done_reason"], "unload");
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"","keep_alive":"0s"}"#,
    )
    .await;
    assert_eq!(r.json()["done_reason"], "unload");
    assert_eq!(
        fake.stats().prompt_tokens_sent + fake.stats().eval_tokens_sent,
        0
    );
}

#[tokio::test]
async fn error_after_and_cut_after() {
    let fake = FakeOllama::start().await;
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"x [[error_after:2]]"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    let lines = r.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2],
        r#"{"error":"an error was encountered while running the model"}"#
    );
    assert!(lines.iter().all(|l| !l.contains("\"done\":true")));

    let r = post(
        &fake,
        "/api/chat",
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"[[error_after:0]]"}]}"#,
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"], MODEL_ERROR);
    let r = post(&fake, "/api/chat", r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"[[error_after:3]]"}]}"#).await;
    assert_eq!(r.status, 500);

    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"x [[cut_after:2]]"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!r.complete, "cut stream must not end cleanly");
    assert_eq!(r.lines().len(), 2);
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"x [[cut_after:0]]"}"#,
    )
    .await;
    assert_eq!(r.status, 0, "no response at all");
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.2","stream":false,"prompt":"x [[cut_after:1]]"}"#,
    )
    .await;
    assert_eq!(r.status, 0);
    let s = fake.stats();
    assert_eq!(
        (s.prompt_tokens_sent, s.eval_tokens_sent, s.disconnects),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn split_lines_across_frames() {
    let fake = FakeOllama::start().await;
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"a b [[split]] [[tokens:3]]"}"#,
    )
    .await;
    assert!(r.complete);
    let lines = r.lines();
    assert_eq!(lines.len(), 4);
    assert_eq!(r.chunks.len(), 12, "3 frames per line");
    // Only the last frame of each line ends it.
    assert_eq!(r.chunks.iter().filter(|c| !c.ends_with(b"\n")).count(), 8);
    assert!(r
        .chunks
        .iter()
        .all(|c| serde_json::from_slice::<Value>(c).is_err()));
    assert_eq!(parse(&lines[3])["eval_count"], 3);
    assert_eq!(fake.stats().eval_tokens_sent, 3);
}

#[tokio::test]
async fn pull_stream() {
    let fake = FakeOllama::start().await;
    let r = post(&fake, "/api/pull", r#"{"model":"test-pull"}"#).await;
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = r.lines().iter().map(|l| parse(l)).collect();
    assert_eq!(lines[0]["status"], "pulling manifest");
    let layer = lines[1]["status"].as_str().unwrap();
    assert!(layer.starts_with("pulling ") && layer.len() == "pulling ".len() + 12);
    assert!(lines[1]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        lines[1].get("completed").is_none(),
        "zero completed is omitted"
    );
    assert_eq!(lines[3]["completed"], lines[3]["total"]);
    assert_eq!(lines.last().unwrap()["status"], "success");
    assert!(lines
        .iter()
        .any(|l| l["status"] == "verifying sha256 digest"));
    assert!(lines.iter().any(|l| l["status"] == "writing manifest"));

    let r = post(&fake, "/api/pull", r#"{"model":"nosuch","stream":true}"#).await;
    let lines = r.lines();
    assert_eq!(
        lines,
        [
            r#"{"status":"pulling manifest"}"#,
            r#"{"error":"pull model manifest: file does not exist"}"#
        ]
    );
    let r = post(&fake, "/api/pull", r#"{"model":"llama3.2","stream":false}"#).await;
    assert_eq!(r.text(), r#"{"status":"success"}"#);
}

#[tokio::test]
async fn openai_chat_completions() {
    let fake = FakeOllama::start().await;
    let msgs = r#""messages":[{"role":"user","content":"say hi [[tokens:3]]"}]"#;
    // stream, no usage
    let r = post(
        &fake,
        "/v1/chat/completions",
        &format!(r#"{{"model":"llama3.2","stream":true,{msgs}}}"#),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let ev = r.sse_data();
    assert_eq!(ev.len(), 3 + 1 + 1);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let c0 = parse(&ev[0]);
    assert_eq!(c0["object"], "chat.completion.chunk");
    assert!(c0["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        c0["choices"][0]["delta"],
        serde_json::json!({"role":"assistant","content":"The"})
    );
    assert_eq!(
        parse(&ev[1])["choices"][0]["delta"],
        serde_json::json!({"content":" sky"})
    );
    let fin = parse(&ev[3]);
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    assert_eq!(fin["choices"][0]["delta"], serde_json::json!({}));
    assert!(ev.iter().all(|e| !e.contains("usage")));
    assert_eq!(fake.stats().eval_tokens_sent, 0);

    // stream with include_usage
    let r = post(
        &fake,
        "/v1/chat/completions",
        &format!(r#"{{"model":"llama3.2","stream":true,"stream_options":{{"include_usage":true}},{msgs}}}"#),
    )
    .await;
    let ev = r.sse_data();
    assert_eq!(ev.len(), 3 + 1 + 1 + 1);
    let u = parse(&ev[4]);
    assert_eq!(u["choices"], serde_json::json!([]));
    assert_eq!(
        u["usage"],
        serde_json::json!({"prompt_tokens":2,"completion_tokens":3,"total_tokens":5})
    );
    assert_eq!(ev[5], "[DONE]");
    assert_eq!(
        (
            fake.stats().prompt_tokens_sent,
            fake.stats().eval_tokens_sent
        ),
        (2, 3)
    );

    // default is non-stream, with usage
    let r = post(
        &fake,
        "/v1/chat/completions",
        &format!(r#"{{"model":"llama3.2",{msgs},"max_tokens":2}}"#),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["choices"][0]["message"]["content"], "The sky");
    assert_eq!(j["choices"][0]["finish_reason"], "length");
    assert_eq!(j["usage"]["total_tokens"], 4);
    assert_eq!(
        (
            fake.stats().prompt_tokens_sent,
            fake.stats().eval_tokens_sent
        ),
        (4, 5)
    );

    // /v1/completions stream with usage: zero usage on every chunk, real usage last.
    let r = post(
        &fake,
        "/v1/completions",
        r#"{"model":"llama3.2","prompt":"p q r","stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
    let ev = r.sse_data();
    assert_eq!(ev.len(), 5 + 1 + 1 + 1);
    assert_eq!(parse(&ev[0])["usage"]["total_tokens"], 0);
    assert_eq!(parse(&ev[5])["choices"][0]["finish_reason"], "stop");
    assert_eq!(parse(&ev[6])["usage"]["total_tokens"], 8);
    let r = post(
        &fake,
        "/v1/chat/completions",
        r#"{"model":"llama3.2","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn blob_upload_counted() {
    let fake = FakeOllama::start().await;
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let r = req(fake.addr, "HEAD", &format!("/api/blobs/{digest}"), "").await;
    assert_eq!(r.status, 404);
    const SIZE: usize = 4 * 1024 * 1024 + 123;
    let resp = tokio::time::timeout(T, async {
        let mut s = TcpStream::connect(fake.addr).await.unwrap();
        let head = format!(
            "POST /api/blobs/{digest} HTTP/1.1\r\nHost: h\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let piece = vec![7u8; 64 * 1024];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(piece.len());
            s.write_all(&piece[..n]).await.unwrap();
            left -= n;
        }
        let mut r = BufReader::new(s);
        read_head(&mut r).await.unwrap()
    })
    .await
    .unwrap();
    assert_eq!(resp.0, 201);
    assert_eq!(fake.stats().bodies_bytes, SIZE as u64);
    let r = req(fake.addr, "HEAD", &format!("/api/blobs/{digest}"), "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn hang_and_disconnects() {
    let fake = FakeOllama::start().await;
    // [[hang]]: headers, then nothing.
    let s = send_head(
        fake.addr,
        "POST",
        "/api/generate",
        br#"{"model":"llama3.2","prompt":"[[hang]]"}"#,
    )
    .await;
    let mut r = BufReader::new(s);
    let (status, headers) = tokio::time::timeout(T, read_head(&mut r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/x-ndjson"));
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(150), r.read(&mut buf))
            .await
            .is_err()
    );
    drop(r);
    fake.wait_until(T, |s| s.disconnects == 1).await;

    // Client leaves in the middle of a slow stream.
    let s = send_head(
        fake.addr,
        "POST",
        "/api/chat",
        br#"{"model":"llama3.2","messages":[{"role":"user","content":"x [[delay:30]] [[tokens:50]]"}]}"#,
    )
    .await;
    let mut r = BufReader::new(s);
    read_head(&mut r).await.unwrap();
    let mut l = String::new();
    r.read_line(&mut l).await.unwrap();
    drop(r);
    fake.wait_until(T, |s| s.disconnects == 2).await;

    // Non-stream request abandoned while the fake "generates".
    let s = send_head(
        fake.addr,
        "POST",
        "/api/generate",
        br#"{"model":"llama3.2","stream":false,"prompt":"x [[first_delay:5000]]"}"#,
    )
    .await;
    // Leave once the fake is handling it (not after a guessed delay).
    fake.wait_until(T, |s| s.requests == 3).await;
    drop(s);
    let st = fake.wait_until(T, |s| s.disconnects == 3).await;
    assert_eq!(st.eval_tokens_sent, 0);
}

#[tokio::test]
async fn stop_and_restart_on_same_addr() {
    let fake = FakeOllama::start().await;
    let addr = fake.addr;
    assert_eq!(req(addr, "GET", "/", "").await.status, 200);
    // A stream in flight is cut by stop().
    let s = send_head(
        addr,
        "POST",
        "/api/generate",
        br#"{"model":"llama3.2","prompt":"x [[delay:50]] [[tokens:100]]"}"#,
    )
    .await;
    let mut r = BufReader::new(s);
    let (_, headers) = read_head(&mut r).await.unwrap();
    fake.stop().await;
    let (_, complete) = tokio::time::timeout(T, read_body(&mut r, "POST", &headers))
        .await
        .unwrap();
    assert!(!complete);
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    let fake = FakeOllama::start_on(addr).await.unwrap();
    assert_eq!(fake.addr, addr);
    assert_eq!(req(addr, "GET", "/api/version", "").await.status, 200);
    assert_eq!(fake.stats().requests, 1);
}
