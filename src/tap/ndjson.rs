//! The reader of Ollama's native answers (`/api/generate`, `/api/chat`): a pure function over
//! the response bytes, split anywhere, that finds the final `done: true` object's stats and
//! any `{"error": ...}` line.
//!
//! The same reader serves a streamed NDJSON answer and a single `stream: false` object: both
//! are a sequence of top-level objects to [`JsonScan`].

use super::json_scan::{JsonScan, Value, Visitor};

/// The backend's own figures from the final object. Every field may be absent: Ollama omits
/// zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalStats {
    pub done_reason: Option<DoneReason>,
    pub prompt_eval_count: Option<u64>,
    pub prompt_eval_cached_count: Option<u64>,
    pub eval_count: Option<u64>,
    pub total_duration: Option<u64>,
    pub load_duration: Option<u64>,
    pub prompt_eval_duration: Option<u64>,
    pub eval_duration: Option<u64>,
}

/// Why the backend stopped (`done_reason`). Unknown reasons are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    Stop,
    Length,
    Load,
    Unload,
    Other,
}

/// What has been read of an answer so far.
#[derive(Debug, Default)]
pub struct Reading {
    /// The `done: true` object, once seen.
    pub final_stats: Option<FinalStats>,
    /// An object with a top-level `error` key was seen.
    pub error: bool,
    /// The `model` the answer carried (the first one seen), as a fallback label.
    pub model: Option<String>,
    /// A chunk carrying content, thinking or tool calls has been seen.
    pub content_seen: bool,
    /// The object being read.
    cur: Current,
}

/// Fields of the object being read.
#[derive(Debug, Default)]
struct Current {
    done: bool,
    error: bool,
    content: bool,
    stats: FinalStats,
}

/// Incremental reader of a native answer: feed it every body chunk in order.
#[derive(Default)]
pub struct NdjsonReader {
    scan: JsonScan,
    pub reading: Reading,
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next chunk of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.scan.feed(chunk, &mut self.reading);
    }
}

// === impl Reading ===

impl Reading {
    /// Whether the answer was complete and good: a `done: true` object and no error object.
    pub fn succeeded(&self) -> bool {
        self.final_stats.is_some() && !self.error
    }

    /// Whether the answer only loaded or unloaded the model (no generation happened).
    pub fn load_only(&self) -> bool {
        matches!(
            self.final_stats.as_ref().and_then(|s| s.done_reason),
            Some(DoneReason::Load | DoneReason::Unload)
        )
    }
}

impl Visitor for Reading {
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
                if let (None, Value::Str(s)) = (&self.model, value) {
                    self.model = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
            DONE => c.done = value == Value::Raw(b"true"),
            DONE_REASON => {
                if let Value::Str(s) = value {
                    c.stats.done_reason = Some(DoneReason::parse(s));
                }
            }
            ERROR => c.error = value != Value::Raw(b"null"),
            PROMPT_EVAL_COUNT => c.stats.prompt_eval_count = num(),
            PROMPT_EVAL_CACHED_COUNT => c.stats.prompt_eval_cached_count = num(),
            EVAL_COUNT => c.stats.eval_count = num(),
            TOTAL_DURATION => c.stats.total_duration = num(),
            LOAD_DURATION => c.stats.load_duration = num(),
            PROMPT_EVAL_DURATION => c.stats.prompt_eval_duration = num(),
            EVAL_DURATION => c.stats.eval_duration = num(),
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
        self.content_seen |= cur.content;
        if cur.error {
            self.error = true;
        } else if cur.done && self.final_stats.is_none() {
            self.final_stats = Some(cur.stats);
        }
    }

    fn abort_object(&mut self) {
        self.cur = Current::default();
    }
}

// === impl DoneReason ===

impl DoneReason {
    fn parse(s: &[u8]) -> Self {
        match s {
            b"stop" => DoneReason::Stop,
            b"length" => DoneReason::Length,
            b"load" => DoneReason::Load,
            b"unload" => DoneReason::Unload,
            _ => DoneReason::Other,
        }
    }
}

/// A non-negative integer as JSON writes it; anything else (floats, negatives, overflow) is None.
fn parse_u64(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
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

    fn expected() -> FinalStats {
        FinalStats {
            done_reason: Some(DoneReason::Stop),
            prompt_eval_count: Some(26),
            prompt_eval_cached_count: None,
            eval_count: Some(298),
            total_duration: Some(5191566416),
            load_duration: Some(2154458),
            prompt_eval_duration: Some(383809000),
            eval_duration: Some(4799921000),
        }
    }

    fn read(chunks: &[&[u8]]) -> Reading {
        let mut r = NdjsonReader::new();
        for c in chunks {
            r.feed(c);
        }
        r.reading
    }

    #[test]
    fn final_stats_from_a_whole_stream() {
        let r = read(&[STREAM.as_bytes()]);
        assert_eq!(r.final_stats, Some(expected()));
        assert!(r.succeeded() && !r.load_only() && r.content_seen);
        assert_eq!(r.model.as_deref(), Some("llama3.2"));
    }

    #[test]
    fn final_stats_at_every_split_point() {
        let b = STREAM.as_bytes();
        for at in 0..=b.len() {
            let (x, y) = b.split_at(at);
            let r = read(&[x, y]);
            assert_eq!(r.final_stats, Some(expected()), "split at {at}");
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
                assert_eq!(r.final_stats, Some(expected()), "splits at {i},{j}");
            }
        }
    }

    #[test]
    fn crlf_line_ends() {
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(read(&[crlf.as_bytes()]).final_stats, Some(expected()));
    }

    #[test]
    fn non_stream_object_without_newline() {
        let body = br#"{"model":"llama3.2","created_at":"x","response":"Hello!","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10,"prompt_eval_count":3,"eval_count":2}"#;
        let r = read(&[body]);
        let s = r.final_stats.expect("final");
        assert_eq!(
            (s.prompt_eval_count, s.eval_count, s.load_duration),
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
        assert!(r.error && !r.succeeded());
    }

    #[test]
    fn stream_without_done_is_not_a_success() {
        let r = read(&[
            br#"{"model":"m","response":"a","done":false}"#,
            b"\n{\"model\":\"m\",\"resp",
        ]);
        assert!(!r.succeeded());
        assert_eq!(r.final_stats, None);
    }

    #[test]
    fn load_only_reply() {
        let r = read(&[br#"{"model":"llama3.2","created_at":"x","response":"","done":true,"done_reason":"load"}"#]);
        assert!(r.succeeded() && r.load_only() && !r.content_seen);
        let r = read(&[br#"{"model":"m","response":"","done":true,"done_reason":"unload"}"#]);
        assert!(r.load_only());
    }

    #[test]
    fn absent_counts_stay_absent() {
        let r = read(&[br#"{"model":"m","done":true,"done_reason":"stop","total_duration":5}"#]);
        let s = r.final_stats.unwrap();
        assert_eq!(
            (s.prompt_eval_count, s.eval_count, s.total_duration),
            (None, None, Some(5))
        );
    }

    #[test]
    fn text_that_looks_like_fields_inside_strings_is_ignored() {
        let r = read(&[br#"{"model":"m","response":"{\"done\":true,\"error\":1}","done":false}"#]);
        assert!(!r.error && r.final_stats.is_none());
    }

    #[test]
    fn error_object_and_404_body() {
        let r = read(&[br#"{"error":"model 'foo' not found"}"#]);
        assert!(r.error && !r.succeeded());
    }

    #[test]
    fn tool_calls_count_as_content() {
        let r = read(&[br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}"#]);
        assert!(r.content_seen);
    }

    #[test]
    fn parse_u64_rejects_non_integers() {
        assert_eq!(parse_u64(b"123"), Some(123));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"1.5"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b""), None);
    }
}
