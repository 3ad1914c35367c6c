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
//! The inputs are proptest strategies run from a fixed seed per property, so a run is
//! reproducible (about 2 s in debug), and a failing input is shrunk (fewer mutations, events
//! and cuts) before it is printed. More cases:
//! `OLLAMA_TAP_PROPTEST_CASES=100000 cargo test --test properties` (a minute or two); another
//! seed: `OLLAMA_TAP_PROPTEST_SEED=<n>`. A failure prints the property, the seed and the
//! smallest failing input found.

use std::cell::Cell;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use ollama_tap::tap::include_usage::{inject, UsageStripper, INJECTED, MAX_EVENT};
use ollama_tap::tap::json_scan::{JsonScan, Value, Visitor, CAP, MAX_PATH};
use ollama_tap::tap::ndjson::NdjsonReader;
use ollama_tap::tap::openai::OpenAiReader;
use ollama_tap::tap::reading::Reading;
use ollama_tap::tap::sniff::{model_from_zstd, ModelSniffer};
use ollama_tap::tap::sse::SseReader;
use ollama_tap::tap::{Meter, TapBody, UsageStripped};
use ollama_tap::BoxError;
use ollama_tap::Endpoint;
use ollama_tap::Store;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngSeed, TestRunner};
use proptest::{bool, option};

// === the generator: proptest strategies ===

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

/// One generated case: a body and the points where it is cut into chunks.
#[derive(Clone)]
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

/// Runs `check` on `cases()` values of `strategy` (a fixed seed per property, so a run is
/// reproducible); a failure is shrunk to a small input, which the panic names with the seed.
fn property<S: Strategy>(name: &str, strategy: S, check: impl Fn(&S::Value))
where
    S::Value: fmt::Debug,
{
    let seed = seed_for(name);
    let config = Config {
        cases: cases() as u32,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&strategy, |value| {
        check(&value);
        Ok(())
    });
    if let Err(e) = result {
        panic!("property `{name}` failed (seed {seed:#x}): {e}");
    }
}

/// Cut points for `body`: none, byte by byte (short bodies), right after bytes whose state
/// must carry over to the next chunk (`\r`, `\\`, `"`, ...), or a few anywhere.
fn cuts(body: &[u8]) -> BoxedStrategy<Vec<usize>> {
    let len = body.len();
    let after: Vec<usize> = (0..len)
        .filter(|&i| b"\r\\\":{[".contains(&body[i]))
        .map(|i| i + 1)
        .collect();
    let anywhere = vec(0..=len, 1..=8).boxed();
    let every = if len <= 600 {
        Just((1..len).collect()).boxed()
    } else {
        anywhere.clone()
    };
    let special = if after.is_empty() {
        Just(Vec::new()).boxed()
    } else {
        prop_oneof![3 => Just(after.clone()), 7 => vec(select(after), 1..=8)].boxed()
    };
    // In this order, a failure shrinks toward no cuts, then a few anywhere.
    prop_oneof![1 => Just(Vec::new()), 5 => anywhere, 3 => special, 1 => every]
        .prop_map(|mut cuts| {
            cuts.sort_unstable();
            cuts
        })
        .boxed()
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

/// One change to a body, at a position relative to its length then.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    Token(Index, &'static [u8]),
    Garbage(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate(Index, usize),
    Flip(Index, u8),
    LineEnds(&'static [u8]),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), select(TOKENS)).prop_map(|(at, t)| Mutation::Token(at, t)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..=8)).prop_map(|(at, g)| Mutation::Garbage(at, g)),
        1 => (any::<Index>(), 0..40usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => (any::<Index>(), 0..200usize).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        1 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        1 => select(vec![&b"\r\n"[..], b"\r", b"\n\n"]).prop_map(Mutation::LineEnds),
    ]
}

/// None (a third of the cases stay intact), or 1 to 4 mutations.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![1 => Just(Vec::new()), 2 => vec(mutation(), 1..=4)]
}

/// `body` with `mutations` applied in turn.
fn mutate(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = body.len();
        let at = |i: &Index| i.index(len + 1);
        match m {
            Mutation::Truncate(i) => body.truncate(at(i)),
            Mutation::Token(i, token) => {
                let at = at(i);
                body.splice(at..at, token.iter().copied());
            }
            Mutation::Garbage(i, garbage) => {
                let at = at(i);
                body.splice(at..at, garbage.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = at(i);
                body.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(i, n) => {
                let at = at(i);
                let end = (at + n).min(len);
                let copy = body[at..end].to_vec();
                body.splice(end..end, copy);
            }
            Mutation::Flip(i, bit) => {
                let at = at(i);
                if at < len {
                    body[at] ^= 1 << bit;
                }
            }
            Mutation::LineEnds(eol) => body = line_ends(&body, eol),
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
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = b"{}[]\":,\\ \n\rdat:[DONE]0123456789-truefalsnl".to_vec();
    prop_oneof![vec(any::<u8>(), 0..300), vec(select(alphabet), 0..300)]
}

/// A case from `fixture` (mutated), or from random bytes one time in ten; then its cuts.
fn input(fixture: impl Strategy<Value = Vec<u8>> + 'static) -> impl Strategy<Value = Input> {
    let body = prop_oneof![
        1 => random_bytes().boxed(),
        9 => (fixture, mutations()).prop_map(|(f, m)| mutate(f, &m)).boxed(),
    ];
    body.prop_flat_map(|body| {
        let cuts = cuts(&body);
        (Just(body), cuts)
    })
    .prop_map(|(body, cuts)| Input { body, cuts })
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
fn native() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(select(NATIVE_LINES), 0..5),
        option::weighted(0.85, select(NATIVE_ENDS)),
        bool::weighted(0.2),
        bool::weighted(0.8),
    )
        .prop_map(|(mut lines, end, crlf, trailing)| {
            lines.extend(end);
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut body = lines.join(eol);
            if trailing {
                body.push_str(eol);
            }
            body.into_bytes()
        })
}

const CHUNK_HEAD: &str = r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499524,"model":"llama3.2","system_fingerprint":"fp_ollama","#;

/// The usage chunk that `include_usage` makes Ollama send.
const USAGE_CHUNK: &str =
    r#""choices":[],"usage":{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}}"#;

fn chat_chunk(delta: &str, finish: &str) -> String {
    format!(r#"{CHUNK_HEAD}"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#)
}

const CHAT_DELTAS: &[&str] = &[
    r#"{"content":"Hello"}"#,
    r#"{"content":"lo \"usage\": []"}"#,
    r#"{"reasoning":"thinking"}"#,
    r#"{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]}"#,
];

/// The events of a streamed `/v1/chat/completions` answer, with or without the usage chunk.
fn chat_events(usage: bool) -> impl Strategy<Value = Vec<String>> {
    let finishes = vec![r#""stop""#, r#""length""#, r#""tool_calls""#];
    (vec(select(CHAT_DELTAS), 0..4), select(finishes)).prop_map(move |(deltas, finish)| {
        let mut events = vec![chat_chunk(r#"{"role":"assistant","content":""}"#, "null")];
        events.extend(deltas.iter().map(|delta| chat_chunk(delta, "null")));
        events.push(chat_chunk("{}", finish));
        if usage {
            events.push(format!("{CHUNK_HEAD}{USAGE_CHUNK}"));
        }
        events.push("data: [DONE]".into());
        events
    })
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
fn sse() -> impl Strategy<Value = Vec<u8>> {
    let owned = |events: &[&str]| events.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    let dialect = prop_oneof![
        bool::weighted(0.7).prop_flat_map(chat_events),
        Just(owned(COMPLETIONS_EVENTS)),
        Just(owned(RESPONSES_EVENTS)),
        Just(owned(ANTHROPIC_EVENTS)),
    ];
    (
        dialect,
        option::weighted(0.2, (any::<Index>(), select(SSE_ERRORS))),
        option::weighted(0.2, any::<Index>()),
        option::weighted(0.2, (any::<Index>(), select(SSE_NOISE))),
        vec((any::<Index>(), 1..=3usize), 0..3),
        select(&["\n", "\n", "\n", "\r\n", "\r"][..]),
    )
        .prop_map(|(mut events, error, removed, noise, multiline, eol)| {
            if let Some((at, error)) = error {
                events.insert(at.index(events.len() + 1), error.to_string());
            }
            if let Some(at) = removed {
                events.remove(at.index(events.len()));
            }
            if let Some((at, noise)) = noise {
                events.insert(at.index(events.len() + 1), noise.to_string());
            }
            for (at, n) in multiline {
                // A payload over several `data:` lines, as the spec joins them.
                let at = at.index(events.len());
                events[at] = events[at].replacen(",\"", ",\ndata: \"", n);
            }
            let mut body = String::new();
            for e in &events {
                body.push_str(&e.replace('\n', eol));
                body.push_str(eol);
                body.push_str(eol);
            }
            body.into_bytes()
        })
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
fn json_answer() -> impl Strategy<Value = Vec<u8>> {
    select(JSON_ANSWERS).prop_map(|a| format!("{a}\n").into_bytes())
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

fn request() -> impl Strategy<Value = Vec<u8>> {
    select(REQUESTS).prop_map(|r| r.as_bytes().to_vec())
}

/// Any of the shapes above.
fn any_shape() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        native().boxed(),
        sse().boxed(),
        json_answer().boxed(),
        request().boxed()
    ]
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
    property("json_scan", input(any_shape()), |i| {
        for stop in [false, true] {
            let whole = scan(&[&i.body], stop);
            assert_eq!(whole, scan(&i.chunks(), stop), "stop after first: {stop}");
        }
    });
}

fn read_native(new: fn() -> NdjsonReader, chunks: &[&[u8]]) -> Reading {
    let mut r = new();
    chunks.iter().for_each(|c| r.feed(c));
    r.reading().clone()
}

#[test]
fn ndjson_reading_is_the_same_however_the_answer_is_split() {
    let succeeded = Cell::new(0);
    property("ndjson", input(native()), |i| {
        for new in [NdjsonReader::new, NdjsonReader::single_object] {
            let whole = read_native(new, &[&i.body]);
            assert_eq!(whole, read_native(new, &i.chunks()));
            let whole_answer = whole.succeeded() && whole.usage.total_duration_ns.is_some();
            succeeded.set(succeeded.get() + usize::from(whole_answer));
        }
    });
    let succeeded = succeeded.get();
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
    let (with_usage, errors) = (Cell::new(0), Cell::new(0));
    property("sse", input(sse()), |i| {
        assert_eq!(frame(&[&i.body]), frame(&i.chunks()), "SSE framing");
        let whole = read_openai(OpenAiReader::stream, &[&i.body]);
        assert_eq!(whole, read_openai(OpenAiReader::stream, &i.chunks()));
        let usage = whole.succeeded() && whole.usage.prompt_tokens.is_some();
        with_usage.set(with_usage.get() + usize::from(usage));
        errors.set(errors.get() + usize::from(whole.error));
    });
    let (with_usage, errors) = (with_usage.get(), errors.get());
    assert!(
        with_usage > cases() / 10,
        "few whole answers with usage: {with_usage}"
    );
    assert!(errors > cases() / 50, "few error answers: {errors}");
}

#[test]
fn json_answer_reading_is_the_same_however_the_answer_is_split() {
    let succeeded = Cell::new(0);
    property(
        "openai_json",
        input(prop_oneof![8 => json_answer().boxed(), 2 => sse().boxed()]),
        |i| {
            let whole = read_openai(OpenAiReader::json, &[&i.body]);
            assert_eq!(whole, read_openai(OpenAiReader::json, &i.chunks()));
            succeeded.set(succeeded.get() + usize::from(whole.succeeded()));
        },
    );
    let succeeded = succeeded.get();
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
    let (found, users) = (Cell::new(0), Cell::new(0));
    property(
        "sniff",
        (
            input(prop_oneof![85 => request().boxed(), 15 => any_shape().boxed()]),
            // one case in eight also goes through zstd
            bool::weighted(0.125),
        ),
        |(i, zstd)| {
            let whole = sniff(ModelSniffer::new(), &[&i.body]);
            assert_eq!(whole, sniff(ModelSniffer::new(), &i.chunks()));
            let cut_at_cap = whole.0.as_ref().is_some_and(|m| m.len() >= 200);
            if let (Some(want), false) = (serde_top(&i.body, "model"), cut_at_cap) {
                // the sniffer decodes escapes itself (`hf.co\/org` is `hf.co/org`)
                assert_eq!(whole.0, want, "serde_json reads another model");
            }
            found.set(found.get() + usize::from(whole.0.is_some()));
            // looking for the user too (client_from_body) changes nothing about the model
            let with_user = sniff(ModelSniffer::with_user(), &[&i.body]);
            assert_eq!(with_user, sniff(ModelSniffer::with_user(), &i.chunks()));
            assert_eq!(with_user.0, whole.0, "the model changed");
            let cut_at_cap = with_user.1.as_ref().is_some_and(|u| u.len() >= CAP - 8);
            if let (Some(want), false) = (serde_top(&i.body, "user"), cut_at_cap) {
                assert_eq!(with_user.1, want, "serde_json reads another user");
            }
            users.set(users.get() + usize::from(with_user.1.is_some()));
            let _ = model_from_zstd(&i.body);
            if *zstd {
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
    let (found, users) = (found.get(), users.get());
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
    let (injected, decided) = (Cell::new(0), Cell::new(0));
    property("inject", input(request()), |i| {
        let got = inject(&i.body);
        if let Some(want) = serde_streams_without_options(&i.body) {
            decided.set(decided.get() + 1);
            assert_eq!(got.is_some(), want, "inject disagrees with serde_json");
        }
        let Some(out) = got else { return };
        injected.set(injected.get() + 1);
        let open = i.body.iter().position(|&b| b == b'{').unwrap() + 1;
        assert_eq!(out, [&i.body[..open], INJECTED, &i.body[open..]].concat());
        assert_eq!(inject(&out), None, "injected twice");
        if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice(&i.body) {
            let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
            assert_eq!(v["stream_options"]["include_usage"], true);
        }
    });
    let (injected, decided) = (injected.get(), decided.get());
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
    property("strip", input(sse()), |i| {
        let whole = strip(&[&i.body]);
        assert_eq!(whole, strip(&i.chunks()), "output differs when split");
        if !i.body.windows(7).any(|w| w == b"\"usage\"") {
            assert_eq!(whole, i.body, "a stream without usage was changed");
        }
        assert!(
            is_input_less_usage_events(&i.body, &whole),
            "removed more than usage events"
        );
    });
    // Intact chat streams lose exactly their usage chunk.
    let intact = (chat_events(true), select(&["\n", "\r\n"][..])).prop_flat_map(|(events, eol)| {
        let body = sse_events(&events, eol);
        let cuts = cuts(&body);
        (Just(events), Just(eol), Just(body), cuts)
    });
    property("strip-intact", intact, |(events, eol, body, cuts)| {
        let mut want = events.clone();
        want.retain(|e| !e.ends_with(USAGE_CHUNK));
        let i = Input {
            body: body.clone(),
            cuts: cuts.clone(),
        };
        assert_eq!(strip(&i.chunks()), sse_events(&want, eol), "{i:?}");
    });
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
    let status = prop_oneof![
        3 => Just(StatusCode::OK),
        2 => Just(StatusCode::NOT_FOUND),
        2 => Just(StatusCode::INTERNAL_SERVER_ERROR),
    ];
    property(
        "tap_body",
        (
            input(any_shape()),
            select(combos),
            status,
            // one case in four also runs with the usage stripper on
            bool::weighted(0.25),
        ),
        |(i, (endpoint, content_type), status, stripped)| {
            let (endpoint, content_type, status) = (*endpoint, *content_type, *status);
            let (out, recorded) =
                rt.block_on(tap(i.chunks(), endpoint, status, content_type, false));
            assert_eq!(out, i.body, "{endpoint:?} {content_type:?} {status}");
            assert_eq!(recorded, 1.0, "recorded once");
            if *stripped && status.is_success() && content_type == Some("text/event-stream") {
                // With the usage stripper on, it forwards what the stripper lets through.
                let (out, _) = rt.block_on(tap(i.chunks(), endpoint, status, content_type, true));
                assert_eq!(out, strip(&i.chunks()), "stripped");
            }
        },
    );
}
