//! Property tests of the tap's stream readers and request sniffer, run by `cargo test` (the
//! cargo-fuzz targets in `fuzz/` explore the same properties without a time limit).
//!
//! Each property runs on a few thousand generated inputs: random bytes, and real-shaped
//! answers and requests (NDJSON Ollama lines, OpenAI SSE chunks with usage, Responses and
//! Anthropic events, JSON bodies) mutated by truncation, inserted garbage or syntax, deleted
//! and duplicated ranges, flipped bytes and other line ends, then split at random points.
//! Asserted: no panic; the reading (and the SSE framing, the scanner's events, the sniffed
//! model and user, the stripped stream) is the same whether the input arrives whole or split;
//! the sniffed model (and user) is serde_json's wherever serde_json reads the body, and the
//! model the same whether the user is looked for or not; `inject` only inserts
//! `INJECTED` after the first `{`; the usage stripper removes nothing but whole usage events;
//! and `TapBody` forwards exactly the bytes it received, for every endpoint and content type.
//!
//! The generator is a fixed-seed xorshift, so a run is reproducible (about 2 s in debug).
//! More cases: `OLLAMA_TAP_PROPTEST_CASES=100000 cargo test --test properties` (a minute or
//! two); another seed: `OLLAMA_TAP_PROPTEST_SEED=<n>`. A failure prints the property, case,
//! seed and input.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use ollama_tap::proxy::BoxError;
use ollama_tap::store::Store;
use ollama_tap::tap::include_usage::{inject, UsageStripper, INJECTED, MAX_EVENT};
use ollama_tap::tap::json_scan::{JsonScan, Value, Visitor, CAP, MAX_PATH};
use ollama_tap::tap::ndjson::NdjsonReader;
use ollama_tap::tap::openai::OpenAiReader;
use ollama_tap::tap::reading::Reading;
use ollama_tap::tap::sniff::{model_from_zstd, ModelSniffer};
use ollama_tap::tap::sse::SseReader;
use ollama_tap::tap::{Meter, TapBody, UsageStripped};
use ollama_tap::vocab::Endpoint;

// === the generator ===

/// Cases per property (`OLLAMA_TAP_PROPTEST_CASES`, default 2000).
fn cases() -> usize {
    std::env::var("OLLAMA_TAP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// The base seed (`OLLAMA_TAP_PROPTEST_SEED`, default fixed); each property derives its own.
fn seed_for(property: &str) -> u64 {
    let base = std::env::var("OLLAMA_TAP_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7a90_11a3_a7a9_5eed);
    // FNV-1a of the name: properties do not share a sequence.
    property.bytes().fold(base ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// xorshift64*: tiny, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`%.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One generated case: a body and the points where it is cut into chunks.
struct Input {
    body: Vec<u8>,
    /// Sorted positions in `0..=body.len()`; repeats give empty chunks.
    cuts: Vec<usize>,
}

impl Input {
    fn chunks(&self) -> Vec<&[u8]> {
        let mut chunks = Vec::with_capacity(self.cuts.len() + 1);
        let mut at = 0;
        for &cut in &self.cuts {
            chunks.push(&self.body[at..cut]);
            at = cut;
        }
        chunks.push(&self.body[at..]);
        chunks
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "body b\"{}\", cuts {:?}",
            self.body.escape_ascii(),
            self.cuts
        )
    }
}

/// Runs `check` on `cases()` generated inputs; a failure (any panic) names the input.
fn property(
    name: &str,
    mut generate: impl FnMut(&mut Rng) -> Input,
    mut check: impl FnMut(&Input),
) {
    let seed = seed_for(name);
    let mut rng = Rng::new(seed);
    for case in 0..cases() {
        let input = generate(&mut rng);
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| check(&input))) {
            eprintln!("property `{name}` failed at case {case} (seed {seed:#x}): {input:?}");
            panic::resume_unwind(e);
        }
    }
}

/// Random cut points: none, byte by byte (short bodies), right after bytes whose state must
/// carry over to the next chunk (`\r`, `\\`, `"`, ...), or a few anywhere.
fn cuts(rng: &mut Rng, body: &[u8]) -> Vec<usize> {
    let len = body.len();
    let mut cuts: Vec<usize> = match rng.below(10) {
        0 => vec![],
        1 if len <= 600 => (1..len).collect(),
        2..=4 => {
            let after: Vec<usize> = (0..len)
                .filter(|&i| b"\r\\\":{[".contains(&body[i]))
                .map(|i| i + 1)
                .collect();
            if after.is_empty() {
                vec![]
            } else if rng.chance(30) {
                after
            } else {
                (0..1 + rng.below(8)).map(|_| *rng.pick(&after)).collect()
            }
        }
        _ => (0..1 + rng.below(8)).map(|_| rng.below(len + 1)).collect(),
    };
    cuts.sort_unstable();
    cuts
}

/// Bytes that matter to the readers, inserted as garbage.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\\"",
    b":",
    b",",
    b" ",
    b"\n",
    b"\r\n",
    b"\r",
    b"\n\n",
    b"\r\n\r\n",
    b"data:",
    b"data: ",
    b"data: [DONE]\n\n",
    b"[DONE]",
    b"event: ",
    b": ",
    b"null",
    b"true",
    b"false",
    b"-1",
    b"1e9",
    b"18446744073709551616",
    b"\"usage\"",
    b"\"choices\":[]",
    b"\"model\":\"x\"",
    b"\"done\":true",
    b"\"error\":{}",
    b"\"type\":\"error\"",
    b"{\"model\":\"m\"}\n",
    b"\xc3\xa9",
    b"\xff\xfe",
    b"\0",
];

/// `body` mutated 0 to 4 times (a third of the cases stay intact).
fn mutate(rng: &mut Rng, mut body: Vec<u8>) -> Vec<u8> {
    let rounds = if rng.chance(33) { 0 } else { 1 + rng.below(4) };
    for _ in 0..rounds {
        let len = body.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 => body.truncate(at),
            1 | 2 => {
                let token = *rng.pick(TOKENS);
                body.splice(at..at, token.iter().copied());
            }
            3 => {
                let garbage: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                body.splice(at..at, garbage);
            }
            4 => {
                let end = (at + rng.below(40)).min(len);
                body.drain(at..end);
            }
            5 => {
                let end = (at + rng.below(200)).min(len);
                let copy = body[at..end].to_vec();
                body.splice(end..end, copy);
            }
            6 if at < len => body[at] ^= 1 << rng.below(8),
            _ => {
                let eol = *rng.pick::<&[u8]>(&[b"\r\n", b"\r", b"\n\n"]);
                body = line_ends(&body, eol);
            }
        }
    }
    body
}

/// Every `\n` replaced by `eol`.
fn line_ends(body: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    for &b in body {
        if b == b'\n' {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
    }
    out
}

/// Random bytes, drawn either from everything or from JSON/SSE syntax.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(300);
    if rng.chance(50) {
        (0..len).map(|_| rng.next() as u8).collect()
    } else {
        let alphabet = b"{}[]\":,\\ \n\rdat:[DONE]0123456789-truefalsnl";
        (0..len).map(|_| *rng.pick(alphabet)).collect()
    }
}

/// A case from `fixture` (mutated), or from random bytes one time in ten.
fn input(rng: &mut Rng, fixture: impl FnOnce(&mut Rng) -> Vec<u8>) -> Input {
    let body = if rng.chance(10) {
        random_bytes(rng)
    } else {
        let f = fixture(rng);
        mutate(rng, f)
    };
    let cuts = cuts(rng, &body);
    Input { body, cuts }
}

// === real-shaped answers and requests ===

const NATIVE_LINES: &[&str] = &[
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.097767Z","message":{"role":"assistant","content":"The"},"done":false}"#,
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.1Z","message":{"role":"assistant","content":" sky \"is\" blue\n"},"done":false}"#,
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.1Z","message":{"role":"assistant","content":"","thinking":"Hmm."},"done":false}"#,
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.2Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}"#,
    r#"{"model":"qwen2.5:0.5b","created_at":"2025-10-26T17:15:24.3Z","response":"Hi","done":false}"#,
];

const NATIVE_ENDS: &[&str] = &[
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.2Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000}"#,
    r#"{"model":"qwen2.5:0.5b","created_at":"x","response":"","done":true,"done_reason":"length","context":[1,2,3],"total_duration":10,"prompt_eval_count":3,"prompt_eval_cached_count":2,"eval_count":2}"#,
    r#"{"error":"an error was encountered while running the model"}"#,
    r#"{"model":"llama3.2","created_at":"x","response":"","done":true,"done_reason":"load"}"#,
    r#"{"model":"nomic-embed-text","embeddings":[[0.1,-0.2,3e-5]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#,
];

/// A native answer: content lines, then (usually) a final, error or load line.
fn native(rng: &mut Rng) -> Vec<u8> {
    let mut lines: Vec<&str> = (0..rng.below(5)).map(|_| *rng.pick(NATIVE_LINES)).collect();
    if rng.chance(85) {
        lines.push(*rng.pick(NATIVE_ENDS));
    }
    let eol = if rng.chance(20) { "\r\n" } else { "\n" };
    let mut body = lines.join(eol);
    if rng.chance(80) {
        body.push_str(eol);
    }
    body.into_bytes()
}

const CHUNK_HEAD: &str = r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499524,"model":"llama3.2","system_fingerprint":"fp_ollama","#;

/// The usage chunk that `include_usage` makes Ollama send.
const USAGE_CHUNK: &str =
    r#""choices":[],"usage":{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}}"#;

fn chat_chunk(delta: &str, finish: &str) -> String {
    format!(r#"{CHUNK_HEAD}"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#)
}

/// The events of a streamed `/v1/chat/completions` answer, with or without the usage chunk.
fn chat_events(rng: &mut Rng, usage: bool) -> Vec<String> {
    let mut events = vec![chat_chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for _ in 0..rng.below(4) {
        let content = *rng.pick::<&str>(&[
            r#"{"content":"Hello"}"#,
            r#"{"content":"lo \"usage\": []"}"#,
            r#"{"reasoning":"thinking"}"#,
            r#"{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]}"#,
        ]);
        events.push(chat_chunk(content, "null"));
    }
    let finish = *rng.pick::<&str>(&[r#""stop""#, r#""length""#, r#""tool_calls""#]);
    events.push(chat_chunk("{}", finish));
    if usage {
        events.push(format!("{CHUNK_HEAD}{USAGE_CHUNK}"));
    }
    events.push("data: [DONE]".into());
    events
}

const COMPLETIONS_EVENTS: &[&str] = &[
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499524,"choices":[{"text":"Why","index":0,"finish_reason":null}],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499525,"choices":[{"text":"","index":0,"finish_reason":"stop"}],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499525,"choices":[],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}"#,
    "data: [DONE]",
];

const RESPONSES_EVENTS: &[&str] = &[
    "event: response.created\n\
     data: {\"response\":{\"id\":\"resp_1\",\"model\":\"qwen3:0.6b\",\"object\":\"response\",\"output\":[],\"status\":\"in_progress\",\"usage\":null},\"sequence_number\":0,\"type\":\"response.created\"}",
    "event: response.output_text.delta\n\
     data: {\"content_index\":0,\"delta\":\"Hi\",\"item_id\":\"msg_1\",\"logprobs\":[],\"output_index\":0,\"sequence_number\":4,\"type\":\"response.output_text.delta\"}",
    "event: response.completed\n\
     data: {\"response\":{\"id\":\"resp_1\",\"model\":\"qwen3:0.6b\",\"output\":[{\"content\":[{\"annotations\":[],\"text\":\"Hi\",\"type\":\"output_text\"}],\"id\":\"msg_1\",\"role\":\"assistant\",\"status\":\"completed\",\"type\":\"message\"}],\"status\":\"completed\",\"usage\":{\"input_tokens\":14,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":4,\"total_tokens\":18}},\"sequence_number\":10,\"type\":\"response.completed\"}",
];

const ANTHROPIC_EVENTS: &[&str] = &[
    "event: message_start\n\
     data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"llama3.2\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":31,\"cache_read_input_tokens\":4,\"output_tokens\":0}}}",
    "event: content_block_start\n\
     data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    "event: ping\ndata: {\"type\": \"ping\"}",
    "event: content_block_delta\n\
     data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}",
    "event: content_block_delta\n\
     data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"Par\"}}",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}",
    "event: message_delta\n\
     data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":8}}",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}",
];

const SSE_ERRORS: &[&str] = &[
    r#"data: {"error":{"message":"an error was encountered while running the model","type":"api_error","param":null,"code":null}}"#,
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
    "event: response.failed\ndata: {\"response\":{\"model\":\"llama3.2\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\"}},\"type\":\"response.failed\"}",
];

const SSE_NOISE: &[&str] = &[": keep-alive", "retry: 3000", "id: 7", "event: message"];

/// An SSE answer of one dialect: its events in order (some repeated or dropped), with the
/// odd comment, error event or pretty-printed payload line.
fn sse(rng: &mut Rng) -> Vec<u8> {
    let mut events: Vec<String> = match rng.below(4) {
        0 => {
            let usage = rng.chance(70);
            chat_events(rng, usage)
        }
        1 => COMPLETIONS_EVENTS.iter().map(|e| e.to_string()).collect(),
        2 => RESPONSES_EVENTS.iter().map(|e| e.to_string()).collect(),
        _ => ANTHROPIC_EVENTS.iter().map(|e| e.to_string()).collect(),
    };
    if rng.chance(20) {
        let at = rng.below(events.len() + 1);
        events.insert(at, rng.pick(SSE_ERRORS).to_string());
    }
    if rng.chance(20) {
        let at = rng.below(events.len());
        events.remove(at);
    }
    if rng.chance(20) {
        let at = rng.below(events.len() + 1);
        events.insert(at, rng.pick(SSE_NOISE).to_string());
    }
    for _ in 0..rng.below(3) {
        // A payload over several `data:` lines, as the spec joins them.
        let at = rng.below(events.len());
        events[at] = events[at].replacen(",\"", ",\ndata: \"", 1 + rng.below(3));
    }
    let eol = *rng.pick(&["\n", "\n", "\n", "\r\n", "\r"]);
    let mut body = String::new();
    for e in &events {
        body.push_str(&e.replace('\n', eol));
        body.push_str(eol);
        body.push_str(eol);
    }
    body.into_bytes()
}

const JSON_ANSWERS: &[&str] = &[
    r#"{"id":"chatcmpl-417","object":"chat.completion","created":1729000000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":7,"total_tokens":33}}"#,
    r#"{"id":"cmpl-554","object":"text_completion","created":1761499524,"model":"llama3.2","choices":[{"text":"Why did the chicken","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":30,"completion_tokens":16,"total_tokens":46}}"#,
    r#"{"object":"list","data":[{"object":"embedding","embedding":[0.010071029,-0.0017594862],"index":0}],"model":"all-minilm","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
    r#"{"id":"resp_1","object":"response","status":"completed","incomplete_details":null,"model":"qwen3:0.6b","output":[{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Greeting."}]},{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello!","annotations":[]}]}],"error":null,"usage":{"input_tokens":11,"output_tokens":23,"total_tokens":34,"input_tokens_details":{"cached_tokens":0}}}"#,
    r#"{"id":"msg_2b","type":"message","role":"assistant","model":"llama3.2","content":[{"type":"text","text":"Hello!"},{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"end_turn","usage":{"input_tokens":14,"output_tokens":10}}"#,
    r#"{"error":{"message":"model \"nope\" not found, try pulling it first","type":"not_found_error","param":null,"code":null}}"#,
    r#"{"type":"error","error":{"type":"not_found_error","message":"model 'nope' not found"},"request_id":"req_8d"}"#,
];

/// A non-streamed JSON answer, as Go's encoder writes it (one trailing newline).
fn json_answer(rng: &mut Rng) -> Vec<u8> {
    format!("{}\n", rng.pick(JSON_ANSWERS)).into_bytes()
}

const REQUESTS: &[&str] = &[
    r#"{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}"#,
    r#"{"messages":[{"role":"user","content":"model: \"no\""}],"model":"qwen2.5:0.5b","stream":true}"#,
    "{\n  \"model\": \"qwen2.5:0.5b\",\n  \"prompt\": \"Why is the sky blue?\"\n}\n",
    r#"{"options":{"model":"nested","temperature":0.2},"model":"hf.co/org/repo-GGUF:Q4_K_M","input":["a","b"]}"#,
    r#"{"model":"llama3.2","messages":[{"role":"user","content":"Hi"}],"stream":true}"#,
    "\r\n  {\n  \"model\" : \"m\",\n  \"messages\": [\n    {\"role\": \"user\", \"content\": \"x\"}\n  ],\n  \"stream\" : true\n}\n",
    r#"{"stream":false,"model":"m","Stream":true}"#,
    r#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
    r#"{"model":"m","stream":true,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
    r#"{"prompt":"no model here","stream":true}"#,
    r#"{"model":"llama3.2","user":"alice@example.com","messages":[],"stream":false}"#,
    r#"{"input":["a"],"user":"d\u00e9d\u00e9 \"q\" \\ x","model":"nomic-embed-text"}"#,
];

fn request(rng: &mut Rng) -> Vec<u8> {
    rng.pick(REQUESTS).as_bytes().to_vec()
}

/// Any of the shapes above.
fn any_shape(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => native(rng),
        1 => sse(rng),
        2 => json_answer(rng),
        _ => request(rng),
    }
}

// === the properties ===

/// Everything a [`Visitor`] hears, as text; keys are asked for by their first byte.
#[derive(Default)]
struct Log {
    events: Vec<String>,
    stop_after_first: bool,
}

impl Visitor for Log {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        assert!(path.len() < MAX_PATH && key.len() <= CAP);
        key.first().map_or(1, |b| b % 4)
    }

    fn value(&mut self, path: &[u8], value: Value<'_>) {
        assert!(!path.is_empty() && path.len() <= MAX_PATH && path[path.len() - 1] != 0);
        let text = match value {
            Value::Str(s) => format!("s:{}", s.escape_ascii()),
            Value::Raw(r) => {
                assert!(!r.is_empty());
                format!("r:{}", r.escape_ascii())
            }
            Value::Container => "c".into(),
        };
        if let Value::Str(s) | Value::Raw(s) = value {
            assert!(s.len() <= CAP);
        }
        self.events.push(format!("{path:?}={text}"));
    }

    fn start_object(&mut self) {
        self.events.push("{".into());
    }

    fn end_object(&mut self) {
        self.events.push("}".into());
    }

    fn abort_object(&mut self) {
        self.events.push("abort".into());
    }

    fn satisfied(&self) -> bool {
        self.stop_after_first && self.events.iter().any(|e| e == "}")
    }
}

fn scan(chunks: &[&[u8]], stop_after_first: bool) -> (Vec<String>, bool, bool) {
    let (mut scan, mut log) = (
        JsonScan::new(),
        Log {
            stop_after_first,
            ..Log::default()
        },
    );
    for c in chunks {
        scan.feed(c, &mut log);
    }
    (log.events, scan.invalid, scan.at_top())
}

#[test]
fn json_scan_reports_the_same_events_however_the_input_is_split() {
    property(
        "json_scan",
        |rng| input(rng, any_shape),
        |i| {
            for stop in [false, true] {
                let whole = scan(&[&i.body], stop);
                assert_eq!(whole, scan(&i.chunks(), stop), "stop after first: {stop}");
            }
        },
    );
}

fn read_native(new: fn() -> NdjsonReader, chunks: &[&[u8]]) -> Reading {
    let mut r = new();
    chunks.iter().for_each(|c| r.feed(c));
    r.reading().clone()
}

#[test]
fn ndjson_reading_is_the_same_however_the_answer_is_split() {
    let mut succeeded = 0;
    property(
        "ndjson",
        |rng| input(rng, native),
        |i| {
            for new in [NdjsonReader::new, NdjsonReader::single_object] {
                let whole = read_native(new, &[&i.body]);
                assert_eq!(whole, read_native(new, &i.chunks()));
                succeeded +=
                    usize::from(whole.succeeded() && whole.usage.total_duration_ns.is_some());
            }
        },
    );
    assert!(
        succeeded > cases() / 10,
        "the generator rarely makes a whole answer: {succeeded}"
    );
}

fn frame(chunks: &[&[u8]]) -> (Vec<String>, bool) {
    let (mut sse, mut log) = (SseReader::new(), Log::default());
    chunks.iter().for_each(|c| sse.feed(c, &mut log));
    (log.events, sse.done_seen())
}

fn read_openai(new: fn() -> OpenAiReader, chunks: &[&[u8]]) -> Reading {
    let mut r = new();
    chunks.iter().for_each(|c| r.feed(c));
    r.reading().clone()
}

#[test]
fn sse_framing_and_stream_reading_are_the_same_however_the_answer_is_split() {
    let (mut with_usage, mut errors) = (0, 0);
    property(
        "sse",
        |rng| input(rng, sse),
        |i| {
            assert_eq!(frame(&[&i.body]), frame(&i.chunks()), "SSE framing");
            let whole = read_openai(OpenAiReader::stream, &[&i.body]);
            assert_eq!(whole, read_openai(OpenAiReader::stream, &i.chunks()));
            with_usage += usize::from(whole.succeeded() && whole.usage.prompt_tokens.is_some());
            errors += usize::from(whole.error);
        },
    );
    assert!(
        with_usage > cases() / 10,
        "few whole answers with usage: {with_usage}"
    );
    assert!(errors > cases() / 50, "few error answers: {errors}");
}

#[test]
fn json_answer_reading_is_the_same_however_the_answer_is_split() {
    let mut succeeded = 0;
    property(
        "openai_json",
        |rng| {
            input(rng, |rng| {
                if rng.chance(80) {
                    json_answer(rng)
                } else {
                    sse(rng)
                }
            })
        },
        |i| {
            let whole = read_openai(OpenAiReader::json, &[&i.body]);
            assert_eq!(whole, read_openai(OpenAiReader::json, &i.chunks()));
            succeeded += usize::from(whole.succeeded());
        },
    );
    assert!(succeeded > cases() / 10, "few whole answers: {succeeded}");
}

/// (model, user, finished) of `s` fed `chunks`.
fn sniff(mut s: ModelSniffer, chunks: &[&[u8]]) -> (Option<String>, Option<String>, bool) {
    for c in chunks {
        // Fed on after it finished (the proxy stops there): that must change nothing.
        s.feed(c);
    }
    let finished = s.finished();
    let (model, user) = s.into_found();
    (model, user, finished)
}

/// The top-level string `key` (`model`, `user`) by serde_json, when the body is valid JSON
/// with `"key"` in it once.
fn serde_top(body: &[u8], key: &str) -> Option<Option<String>> {
    let quoted = format!("\"{key}\"");
    if body
        .windows(quoted.len())
        .filter(|w| *w == quoted.as_bytes())
        .count()
        > 1
    {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let value = v.as_object()?.get(key).and_then(|m| m.as_str());
    Some(value.map(String::from))
}

#[test]
fn the_sniffed_model_and_user_are_the_same_however_the_request_is_split() {
    let mut found = 0;
    let mut users = 0;
    let mut zstd_case = 0;
    property(
        "sniff",
        |rng| {
            input(rng, |rng| {
                if rng.chance(85) {
                    request(rng)
                } else {
                    any_shape(rng)
                }
            })
        },
        |i| {
            let whole = sniff(ModelSniffer::new(), &[&i.body]);
            assert_eq!(whole, sniff(ModelSniffer::new(), &i.chunks()));
            let cut_at_cap = whole.0.as_ref().is_some_and(|m| m.len() >= 200);
            if let (Some(want), false) = (serde_top(&i.body, "model"), cut_at_cap) {
                // the sniffer decodes escapes itself (`hf.co\/org` is `hf.co/org`)
                assert_eq!(whole.0, want, "serde_json reads another model");
            }
            found += usize::from(whole.0.is_some());
            // looking for the user too (client_from_body) changes nothing about the model
            let with_user = sniff(ModelSniffer::with_user(), &[&i.body]);
            assert_eq!(with_user, sniff(ModelSniffer::with_user(), &i.chunks()));
            assert_eq!(with_user.0, whole.0, "the model changed");
            let cut_at_cap = with_user.1.as_ref().is_some_and(|u| u.len() >= CAP - 8);
            if let (Some(want), false) = (serde_top(&i.body, "user"), cut_at_cap) {
                assert_eq!(with_user.1, want, "serde_json reads another user");
            }
            users += usize::from(with_user.1.is_some());
            let _ = model_from_zstd(&i.body);
            zstd_case += 1;
            if zstd_case % 8 == 0 {
                let z = ruzstd::encoding::compress_to_vec(
                    &i.body[..],
                    ruzstd::encoding::CompressionLevel::Fastest,
                );
                assert_eq!(model_from_zstd(&z), whole.0, "zstd body");
                let cut = i.cuts.first().copied().unwrap_or(0).min(z.len());
                let m = model_from_zstd(&z[..cut]);
                assert!(m.is_none() || m == whole.0, "cut zstd body gave {m:?}");
            }
        },
    );
    assert!(found > cases() / 4, "few models found: {found}");
    assert!(users > cases() / 20, "few users found: {users}");
}

/// Whether Ollama would stream `body` without `stream_options`, by serde_json, when that is
/// plain: one JSON object, ASCII without escapes (no key can decode to another), and at most
/// one top-level key that is `stream` ASCII case-insensitively (a map keeps no order to tell
/// which of several comes last, as Go's decoder takes). `None` when it is not plain.
fn serde_streams_without_options(body: &[u8]) -> Option<bool> {
    if !body.is_ascii() || body.contains(&b'\\') {
        return None;
    }
    let serde_json::Value::Object(map) = serde_json::from_slice(body).ok()? else {
        return Some(false);
    };
    let named = |name: &'static str| {
        map.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
    };
    match named("stream")[..] {
        [] => Some(false),
        [v] => Some(*v == serde_json::Value::Bool(true) && named("stream_options").is_empty()),
        _ => None,
    }
}

#[test]
fn inject_only_adds_include_usage_right_after_the_first_brace() {
    let (mut injected, mut decided) = (0, 0);
    property(
        "inject",
        |rng| input(rng, request),
        |i| {
            let got = inject(&i.body);
            if let Some(want) = serde_streams_without_options(&i.body) {
                decided += 1;
                assert_eq!(got.is_some(), want, "inject disagrees with serde_json");
            }
            let Some(out) = got else { return };
            injected += 1;
            let open = i.body.iter().position(|&b| b == b'{').unwrap() + 1;
            assert_eq!(out, [&i.body[..open], INJECTED, &i.body[open..]].concat());
            assert_eq!(inject(&out), None, "injected twice");
            if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice(&i.body) {
                let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
                assert_eq!(v["stream_options"]["include_usage"], true);
            }
        },
    );
    assert!(injected > cases() / 20, "few bodies injected: {injected}");
    assert!(
        decided > cases() / 4,
        "few bodies decided by serde_json: {decided}"
    );
}

fn strip(chunks: &[&[u8]]) -> Vec<u8> {
    let (mut s, mut out) = (UsageStripper::new(), Vec::new());
    chunks.iter().for_each(|c| s.filter(c, &mut out));
    s.finish(&mut out);
    out
}

/// The input's SSE events as the stripper frames them (each ends with the `\n` of a blank
/// line, `""` or `"\r"`), then the unfinished rest.
fn events(input: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let (mut out, mut start, mut line) = (Vec::new(), 0, 0);
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' {
            if matches!(&input[line..i], b"" | b"\r") {
                out.push(&input[start..=i]);
                start = i + 1;
            }
            line = i + 1;
        }
    }
    (out, &input[start..])
}

/// Whether `out` is `input` less some whole events that are a single `data:` line with a
/// `"usage"` key (the unfinished rest is always kept).
fn is_input_less_usage_events(input: &[u8], out: &[u8]) -> bool {
    let removable = |e: &[u8]| {
        e.len() <= MAX_EVENT
            && e.starts_with(b"data:")
            && e.iter().filter(|&&b| b == b'\n').count() == 2
            && e.windows(7).any(|w| w == b"\"usage\"")
    };
    let (events, rest) = events(input);
    let mut reach = vec![0];
    for e in events {
        let mut next = Vec::new();
        for &p in &reach {
            if out[p..].starts_with(e) {
                next.push(p + e.len());
            }
            if removable(e) {
                next.push(p);
            }
        }
        next.sort_unstable();
        next.dedup();
        reach = next;
    }
    reach.iter().any(|&p| &out[p..] == rest)
}

fn sse_events(events: &[String], eol: &str) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| format!("{}{eol}{eol}", e.replace('\n', eol)).into_bytes())
        .collect()
}

#[test]
fn the_usage_stripper_removes_only_whole_usage_events_however_the_stream_is_split() {
    property(
        "strip",
        |rng| input(rng, sse),
        |i| {
            let whole = strip(&[&i.body]);
            assert_eq!(whole, strip(&i.chunks()), "output differs when split");
            if !i.body.windows(7).any(|w| w == b"\"usage\"") {
                assert_eq!(whole, i.body, "a stream without usage was changed");
            }
            assert!(
                is_input_less_usage_events(&i.body, &whole),
                "removed more than usage events"
            );
        },
    );
    // Intact chat streams lose exactly their usage chunk.
    let mut rng = Rng::new(seed_for("strip-intact"));
    for _ in 0..cases() / 10 {
        let events = chat_events(&mut rng, true);
        let eol = *rng.pick(&["\n", "\r\n"]);
        let body = sse_events(&events, eol);
        let mut want = events.clone();
        want.retain(|e| !e.ends_with(USAGE_CHUNK));
        let cuts = cuts(&mut rng, &body);
        let i = Input { body, cuts };
        assert_eq!(strip(&i.chunks()), sse_events(&want, eol), "{i:?}");
    }
}

/// A body yielding the given chunks, one frame each.
struct Chunks(std::vec::IntoIter<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
    }
}

const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/x-ndjson"),
    Some("text/event-stream"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

/// What a `TapBody` over `chunks` forwards, and how many requests it recorded.
async fn tap(
    chunks: Vec<&[u8]>,
    endpoint: Endpoint,
    status: StatusCode,
    content_type: Option<&'static str>,
    strip_usage: bool,
) -> (Vec<u8>, f64) {
    let store = Arc::new(Store::new(16));
    let meter = Meter::new(store.clone(), endpoint, tokio::time::Instant::now());
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let frames: Vec<Bytes> = chunks.into_iter().map(Bytes::copy_from_slice).collect();
    let body = TapBody::new(Chunks(frames.into_iter()), meter, status, &headers);
    let out = if strip_usage {
        UsageStripped::new(body).collect().await
    } else {
        body.collect().await
    };
    let out = out.expect("no error").to_bytes().to_vec();
    let recorded = store
        .snapshot()
        .iter()
        .filter(|f| f.name == "ollama_requests_total")
        .flat_map(|f| &f.series)
        .filter(|s| s.suffix.is_empty())
        .map(|s| s.value)
        .sum();
    (out, recorded)
}

#[test]
fn tap_body_forwards_exactly_the_bytes_it_received() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let combos: Vec<(Endpoint, Option<&str>)> = Endpoint::ALL
        .iter()
        .flat_map(|&e| CONTENT_TYPES.iter().map(move |&ct| (e, ct)))
        .collect();
    let mut case = 0;
    property(
        "tap_body",
        |rng| input(rng, any_shape),
        |i| {
            let (endpoint, content_type) = combos[case % combos.len()];
            case += 1;
            let status = [
                StatusCode::OK,
                StatusCode::NOT_FOUND,
                StatusCode::INTERNAL_SERVER_ERROR,
            ][case % 7 % 3];
            let (out, recorded) =
                rt.block_on(tap(i.chunks(), endpoint, status, content_type, false));
            assert_eq!(out, i.body, "{endpoint:?} {content_type:?} {status}");
            assert_eq!(recorded, 1.0, "recorded once");
            if case % 4 == 0 && status.is_success() && content_type == Some("text/event-stream") {
                // With the usage stripper on, it forwards what the stripper lets through.
                let (out, _) = rt.block_on(tap(i.chunks(), endpoint, status, content_type, true));
                assert_eq!(out, strip(&i.chunks()), "stripped");
            }
        },
    );
}
