//! The reader of Ollama's native answers (`/api/generate`, `/api/chat`, `/api/embed`): a pure
//! function over the response bytes, split anywhere, that finds the final `done: true` object's
//! stats (for `/api/embed`, the one object's) and any `{"error": ...}` line.
//!
//! The same reader serves a streamed NDJSON answer and a single `stream: false` object: both
//! are a sequence of top-level objects to [`JsonScan`].

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::json_scan::{JsonScan, Value, Visitor};
use super::reading::{parse_u64, Reading};
use crate::vocab::{FinishReason, Usage};

/// Incremental reader of a native answer: feed it every body chunk in order.
#[derive(Default)]
pub struct NdjsonReader {
    scan: JsonScan,
    state: NativeVisitor,
    /// The start of a line that may still be a progress line, held (not scanned) until its
    /// end shows whether it is one. Only lines split across chunks are held.
    held: Vec<u8>,
    holding: bool,
}

/// Longest line the progress-line fast path considers (Ollama's are a few hundred bytes).
const SKIP_LIMIT: usize = 4096;

/// The [`Visitor`] of a native answer: the reading so far plus the object being read.
#[derive(Default)]
struct NativeVisitor {
    reading: Reading,
    /// Any whole object ends the answer (`/api/embed`, which has no `done`).
    single_object: bool,
    cur: Current,
}

/// Fields of the object being read.
#[derive(Default)]
struct Current {
    done: bool,
    error: bool,
    content: bool,
    finish: Option<FinishReason>,
    usage: Usage,
}

// Key ids (see `Visitor::key_id`).
const MODEL: u8 = 1;
const DONE: u8 = 2;
const DONE_REASON: u8 = 3;
const ERROR: u8 = 4;
const PROMPT_EVAL_COUNT: u8 = 5;
const PROMPT_EVAL_CACHED_COUNT: u8 = 6;
const EVAL_COUNT: u8 = 7;
const TOTAL_DURATION: u8 = 8;
const LOAD_DURATION: u8 = 9;
const PROMPT_EVAL_DURATION: u8 = 10;
const EVAL_DURATION: u8 = 11;
const RESPONSE: u8 = 12;
const THINKING: u8 = 13;
const MESSAGE: u8 = 14;
const TOOL_CALLS: u8 = 15;
const CONTENT: u8 = 16;

// === impl NdjsonReader ===

impl NdjsonReader {
    /// A reader for `/api/generate` and `/api/chat`: the answer ends with `done: true`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader for answers that are one JSON object with no `done` (`/api/embed`).
    pub fn single_object() -> Self {
        let mut r = Self::default();
        r.state.single_object = true;
        r
    }

    /// Reads the next chunk of the answer.
    ///
    /// Line by line: once the model and the first content are known, a line that is only
    /// progress (see [`is_progress_line`]) cannot change the reading, and is skipped with a
    /// few `memchr` scans instead of being parsed. A line split across chunks is held until
    /// its end while it may still be one, so what is skipped depends on the bytes alone,
    /// never on where the chunks were cut. Everything else goes through the scanner.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let nl = memchr::memchr(b'\n', chunk);
            let (piece, rest) = chunk.split_at(nl.map_or(chunk.len(), |i| i + 1));
            chunk = rest;
            if self.holding {
                self.held.extend_from_slice(piece);
                if nl.is_some() {
                    self.holding = false;
                    if !is_progress_line(&self.held) {
                        self.scan.feed(&self.held, &mut self.state);
                    }
                    self.held.clear();
                } else if !could_be_progress(&self.held) {
                    self.holding = false;
                    self.scan.feed(&self.held, &mut self.state);
                    self.held.clear();
                }
            } else if !self.may_skip() {
                self.scan.feed(piece, &mut self.state);
            } else if nl.is_some() {
                if !is_progress_line(piece) {
                    self.scan.feed(piece, &mut self.state);
                }
            } else if could_be_progress(piece) {
                self.held.extend_from_slice(piece);
                self.holding = true;
            } else {
                self.scan.feed(piece, &mut self.state);
            }
        }
    }

    /// Whether a progress line could change nothing: the scanner is between objects, the
    /// answer's model and first content are known (so its `model`, `response`, `message` and
    /// `tool_calls` add nothing), and a `done` object ends the answer.
    fn may_skip(&self) -> bool {
        let r = &self.state.reading;
        !self.state.single_object && self.scan.at_top() && r.content_seen && r.model.is_some()
    }

    pub fn reading(&self) -> &Reading {
        &self.state.reading
    }
}

/// Searchers for the two keys that can change a reading, built once (building one costs more
/// than searching a short line).
static DONE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"done\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// A whole line (newline included) that is an object with `"done":false` as its one `"done"`,
/// no `"error"` key, at most [`SKIP_LIMIT`] bytes, as Ollama writes every line but the last:
/// it can neither end the answer nor make it fail. Inside a JSON string a quote is escaped,
/// so `"done"` and `"error"` as bytes are keys or whole string values; a line naming either
/// twice, or `done` as a value, is parsed like any other. A malformed line of this shape is
/// skipped too (garbage either way; whatever the cut, the same lines are skipped).
fn is_progress_line(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\n") else {
        return false;
    };
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    body.last() == Some(&b'}')
        && could_be_progress(body)
        && DONE_KEY
            .find(body)
            .is_some_and(|at| body[at + 6..].starts_with(b":false"))
}

/// Whether `start` may begin a progress line: true of every prefix of one, so holding a
/// split line while this holds, and scanning it as soon as it does not, sees the same lines
/// as a reader given the whole line at once.
fn could_be_progress(start: &[u8]) -> bool {
    if start.len() > SKIP_LIMIT || start.first().is_some_and(|&b| b != b'{') {
        return false;
    }
    if ERROR_KEY.find(start).is_some() {
        return false;
    }
    let mut done = DONE_KEY.find_iter(start);
    match (done.next(), done.next()) {
        (None, _) => true,
        (Some(at), None) => {
            let after = &start[at + 6..];
            let n = after.len().min(6);
            after[..n] == b":false"[..n]
        }
        _ => false,
    }
}

impl Visitor for NativeVisitor {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        match path {
            [] => match key {
                b"model" => MODEL,
                b"done" => DONE,
                b"done_reason" => DONE_REASON,
                b"error" => ERROR,
                b"prompt_eval_count" => PROMPT_EVAL_COUNT,
                b"prompt_eval_cached_count" => PROMPT_EVAL_CACHED_COUNT,
                b"eval_count" => EVAL_COUNT,
                b"total_duration" => TOTAL_DURATION,
                b"load_duration" => LOAD_DURATION,
                b"prompt_eval_duration" => PROMPT_EVAL_DURATION,
                b"eval_duration" => EVAL_DURATION,
                b"response" => RESPONSE,
                b"thinking" => THINKING,
                b"message" => MESSAGE,
                b"tool_calls" => TOOL_CALLS,
                _ => 0,
            },
            [MESSAGE] => match key {
                b"content" => CONTENT,
                b"thinking" => THINKING,
                b"tool_calls" => TOOL_CALLS,
                _ => 0,
            },
            _ => 0,
        }
    }

    fn value(&mut self, path: &[u8], value: Value<'_>) {
        let c = &mut self.cur;
        let num = || match value {
            Value::Raw(r) => parse_u64(r),
            _ => None,
        };
        match *path.last().unwrap_or(&0) {
            MODEL => {
                if let (None, Value::Str(s)) = (&self.reading.model, value) {
                    self.reading.model = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
            DONE => c.done = value == Value::Raw(b"true"),
            DONE_REASON => {
                if let Value::Str(s) = value {
                    c.finish = Some(FinishReason::parse(s));
                }
            }
            ERROR => c.error = value != Value::Raw(b"null"),
            PROMPT_EVAL_COUNT => c.usage.prompt_tokens = num(),
            PROMPT_EVAL_CACHED_COUNT => c.usage.cached_prompt_tokens = num(),
            EVAL_COUNT => c.usage.completion_tokens = num(),
            TOTAL_DURATION => c.usage.total_duration_ns = num(),
            LOAD_DURATION => c.usage.load_duration_ns = num(),
            PROMPT_EVAL_DURATION => c.usage.prompt_eval_duration_ns = num(),
            EVAL_DURATION => c.usage.eval_duration_ns = num(),
            RESPONSE | THINKING | CONTENT => {
                c.content |= matches!(value, Value::Str(s) if !s.is_empty());
            }
            TOOL_CALLS => c.content |= value == Value::Container,
            _ => {}
        }
    }

    fn start_object(&mut self) {
        self.cur = Current::default();
    }

    fn end_object(&mut self) {
        let cur = std::mem::take(&mut self.cur);
        let r = &mut self.reading;
        r.content_seen |= cur.content;
        if cur.error {
            r.error = true;
        } else if (cur.done || self.single_object) && !r.complete {
            r.complete = true;
            r.usage = cur.usage;
            r.finish_reason = cur.finish;
        }
    }

    fn abort_object(&mut self) {
        self.cur = Current::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-shaped streamed chat answer: two content lines, then the final object.
    const STREAM: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.097767Z","message":{"role":"assistant","content":"The"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.1Z","message":{"role":"assistant","content":" sky"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.2Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000}"#,
        "\n",
    );

    fn expected() -> Usage {
        Usage {
            prompt_tokens: Some(26),
            cached_prompt_tokens: None,
            completion_tokens: Some(298),
            total_duration_ns: Some(5191566416),
            load_duration_ns: Some(2154458),
            prompt_eval_duration_ns: Some(383809000),
            eval_duration_ns: Some(4799921000),
        }
    }

    /// The usage of a complete reading, None otherwise.
    fn usage(r: &Reading) -> Option<Usage> {
        r.complete.then_some(r.usage)
    }

    fn read(chunks: &[&[u8]]) -> Reading {
        let mut r = NdjsonReader::new();
        for c in chunks {
            r.feed(c);
        }
        r.reading().clone()
    }

    /// The reading of the scanner alone, without the progress-line fast path.
    fn read_parsed(chunks: &[&[u8]]) -> Reading {
        let mut r = NdjsonReader::new();
        for c in chunks {
            r.scan.feed(c, &mut r.state);
        }
        r.reading().clone()
    }

    #[test]
    fn progress_lines_are_told_from_lines_that_can_change_the_reading() {
        let progress = [
            "{\"model\":\"m\",\"response\":\"x\",\"done\":false}\n",
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\\\"done\\\":true\"},\"done\":false}\r\n",
        ];
        for line in progress {
            assert!(is_progress_line(line.as_bytes()), "{line}");
        }
        let not = [
            "{\"model\":\"m\",\"response\":\"x\",\"done\":false}", // no newline yet
            "{\"model\":\"m\",\"done\":true,\"eval_count\":1}\n",
            "{\"model\":\"m\",\"response\":\"x\",\"done\": false}\n",
            "{\"error\":\"boom\",\"done\":false}\n",
            "{\"response\":\"done\",\"done\":false}\n",
            "{\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{\"done\":false}}}]},\"done\":true}\n",
            "  {\"done\":false}\n",
        ];
        for line in not {
            assert!(!is_progress_line(line.as_bytes()), "{line}");
        }
    }

    /// Streams whose lines take every path: progress lines (skipped once model and content are
    /// known), lines before that, nested `done` keys either way, `done` as a value, whitespace
    /// a skip must not guess at, an error line, CRLF, and the final object.
    const MIXED: &[&str] = &[
        concat!(
            "{\"model\":\"m\",\"response\":\"\",\"done\":false}\n",
            "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
            "{\"model\":\"m\",\"response\":\"done\",\"done\":false}\n",
            "{\"model\":\"m\", \"response\":\"b\", \"done\": false}\r\n",
            "{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{\"done\":true}}}]},\"done\":false}\n",
            "{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{\"done\":false}}}]},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":4,\"eval_count\":3}\n",
        ),
        concat!(
            "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
            "{\"model\":\"m\",\"response\":\"b\",\"done\":false}\n",
            "{\"error\":\"an error was encountered while running the model\"}\n",
        ),
        concat!(
            "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\r\n",
            "{\"model\":\"m\",\"response\":\"b\",\"done\":false}\r\n",
            "{\"model\":\"m\",\"response\":\"\",\"done\": true,\"eval_count\":2}\r\n",
        ),
    ];

    #[test]
    fn skipping_progress_lines_reads_what_parsing_them_reads_at_every_split() {
        for stream in MIXED.iter().chain([&STREAM]) {
            let b = stream.as_bytes();
            let want = read_parsed(&[b]);
            assert_eq!(read(&[b]), want, "{stream}");
            for at in 0..=b.len() {
                let (x, y) = b.split_at(at);
                assert_eq!(read(&[x, y]), want, "split at {at}: {stream}");
            }
            let bytes: Vec<&[u8]> = b.chunks(1).collect();
            assert_eq!(read(&bytes), want, "byte by byte: {stream}");
        }
        assert!(read(&[MIXED[0].as_bytes()]).succeeded());
        assert!(read(&[MIXED[1].as_bytes()]).error);
        assert!(read(&[MIXED[2].as_bytes()]).succeeded());
    }

    #[test]
    fn final_stats_from_a_whole_stream() {
        let r = read(&[STREAM.as_bytes()]);
        assert_eq!(usage(&r), Some(expected()));
        assert_eq!(r.finish_reason, Some(FinishReason::Stop));
        assert!(r.succeeded() && !r.load_only() && r.content_seen);
        assert_eq!(r.model.as_deref(), Some("llama3.2"));
    }

    #[test]
    fn final_stats_at_every_split_point() {
        let b = STREAM.as_bytes();
        for at in 0..=b.len() {
            let (x, y) = b.split_at(at);
            let r = read(&[x, y]);
            assert_eq!(usage(&r), Some(expected()), "split at {at}");
            assert!(r.succeeded(), "split at {at}");
        }
    }

    #[test]
    fn final_stats_at_every_pair_of_split_points_of_the_final_line() {
        let b = STREAM.as_bytes();
        let start = b.len() - 320;
        for i in start..b.len() {
            for j in i..b.len() {
                let r = read(&[&b[..i], &b[i..j], &b[j..]]);
                assert_eq!(usage(&r), Some(expected()), "splits at {i},{j}");
            }
        }
    }

    #[test]
    fn crlf_line_ends() {
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(usage(&read(&[crlf.as_bytes()])), Some(expected()));
    }

    #[test]
    fn non_stream_object_without_newline() {
        let body = br#"{"model":"llama3.2","created_at":"x","response":"Hello!","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10,"prompt_eval_count":3,"eval_count":2}"#;
        let r = read(&[body]);
        let s = usage(&r).expect("final");
        assert_eq!(
            (s.prompt_tokens, s.completion_tokens, s.load_duration_ns),
            (Some(3), Some(2), None)
        );
        assert!(r.content_seen);
    }

    #[test]
    fn error_line_inside_a_200_stream_is_a_failure() {
        let body = concat!(
            r#"{"model":"m","created_at":"x","response":"a","done":false}"#,
            "\n",
            r#"{"error":"an error was encountered while running the model"}"#,
            "\n"
        );
        let r = read(&[body.as_bytes()]);
        let want = Reading {
            error: true,
            model: Some("m".into()),
            content_seen: true,
            ..Reading::default()
        };
        assert_eq!(r, want);
    }

    #[test]
    fn stream_without_done_is_not_a_success() {
        let r = read(&[
            br#"{"model":"m","response":"a","done":false}"#,
            b"\n{\"model\":\"m\",\"resp",
        ]);
        let want = Reading {
            model: Some("m".into()),
            content_seen: true,
            ..Reading::default()
        };
        assert_eq!(r, want);
    }

    #[test]
    fn load_only_reply() {
        let r = read(&[br#"{"model":"llama3.2","created_at":"x","response":"","done":true,"done_reason":"load"}"#]);
        assert!(r.succeeded() && r.load_only() && !r.content_seen);
        let r = read(&[br#"{"model":"m","response":"","done":true,"done_reason":"unload"}"#]);
        let want = Reading {
            complete: true,
            model: Some("m".into()),
            finish_reason: Some(FinishReason::Unload),
            ..Reading::default()
        };
        assert_eq!(r, want);
    }

    #[test]
    fn absent_counts_stay_absent() {
        let r = read(&[br#"{"model":"m","done":true,"done_reason":"stop","total_duration":5}"#]);
        let s = usage(&r).unwrap();
        assert_eq!(
            (s.prompt_tokens, s.completion_tokens, s.total_duration_ns),
            (None, None, Some(5))
        );
    }

    #[test]
    fn text_that_looks_like_fields_inside_strings_is_ignored() {
        let r = read(&[br#"{"model":"m","response":"{\"done\":true,\"error\":1}","done":false}"#]);
        assert!(!r.error && !r.complete);
    }

    #[test]
    fn error_object_and_404_body() {
        let r = read(&[br#"{"error":"model 'foo' not found"}"#]);
        let want = Reading {
            error: true,
            ..Reading::default()
        };
        assert_eq!(r, want);
    }

    #[test]
    fn tool_calls_count_as_content() {
        let r = read(&[br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}"#]);
        assert!(r.content_seen);
    }

    #[test]
    fn embed_answer_is_one_object_without_done() {
        let body = br#"{"model":"nomic-embed-text","embeddings":[[0.1,0.2]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
        let mut r = NdjsonReader::single_object();
        r.feed(body);
        assert!(r.reading().succeeded());
        assert_eq!(r.reading().usage.prompt_tokens, Some(8));
        let mut r = NdjsonReader::single_object();
        r.feed(br#"{"error":"model 'x' not found"}"#);
        assert!(!r.reading().succeeded());
    }
}
