//! The reader of OpenAI- and Anthropic-dialect answers (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/messages`): a pure function over
//! the response bytes, split anywhere, streamed as SSE or sent as one JSON object.
//!
//! One visitor serves all five endpoints: their keys do not clash. Per top-level object it
//! collects the fields below and commits them when the object ends (an abandoned object
//! commits nothing but its `model`):
//!
//! * model: the first `model`, `message.model` (Anthropic `message_start`) or `response.model`
//!   (Responses stream events) seen;
//! * usage: `usage`, `response.usage` or `message.usage`; each object's counts override only the
//!   counts it carries. That is "the last non-null usage wins" for OpenAI (`/v1/completions`
//!   sends zeros in every chunk and the real counts last) and the merge Anthropic needs
//!   (`message_start` has the input, `message_delta` the output);
//! * finish reason: `choices[].finish_reason`, `stop_reason`, `delta.stop_reason`, or a
//!   Responses `status` (`completed`, or `incomplete` with `incomplete_details.reason`);
//! * content: any non-empty generated text, reasoning or tool call (the `TEXT` and `TOOLS` keys);
//! * error: a non-null top-level `error`, an event of `type` `error` or `response.failed`, or
//!   a `failed` status;
//! * end: SSE `data: [DONE]`, a `response.completed`/`response.incomplete` or `message_stop`
//!   event; or, for a non-streamed body, any whole object that is not an error.

use super::json_scan::{JsonScan, Value, Visitor};
use super::reading::{parse_u64, FinishReason, Reading, Usage};
use super::sse::SseReader;

#[cfg(test)]
mod fixtures;

/// Incremental reader of an OpenAI- or Anthropic-dialect answer: feed it every body chunk.
pub struct OpenAiReader {
    framing: Framing,
    state: OpenAiVisitor,
}

/// How the answer's JSON reaches the visitor. Choose by the response's Content-Type.
enum Framing {
    /// `text/event-stream`.
    Sse(SseReader),
    /// `application/json`: one object.
    Json(JsonScan),
}

/// The [`Visitor`] of an OpenAI- or Anthropic-dialect answer: the reading so far plus the
/// object being read.
#[derive(Default)]
struct OpenAiVisitor {
    reading: Reading,
    /// Any whole object that is not an error ends the answer (non-streamed bodies).
    single_object: bool,
    cur: Current,
}

/// Fields of the object being read.
#[derive(Default)]
struct Current {
    event: Event,
    error: bool,
    content: bool,
    finish: Option<FinishReason>,
    status: Option<ResponseStatus>,
    incomplete_reason: Option<FinishReason>,
    usage: Usage,
}

/// What a top-level `type` says about the event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Event {
    #[default]
    Other,
    /// `response.completed`, `response.incomplete`, `message_stop`.
    End,
    /// `error`, `response.failed`.
    Error,
}

/// A Responses API `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseStatus {
    Completed,
    Incomplete,
    Failed,
    Other,
}

// Key ids (see `Visitor::key_id`). Ids name what a value means, wherever it sits.
const MODEL: u8 = 1;
const USAGE: u8 = 2;
const PROMPT_TOKENS: u8 = 3;
const COMPLETION_TOKENS: u8 = 4;
const CACHED_TOKENS: u8 = 5;
/// `prompt_tokens_details`, `input_tokens_details`.
const DETAILS: u8 = 6;
const CHOICES: u8 = 7;
/// `finish_reason`, `stop_reason`.
const FINISH: u8 = 8;
/// `choices[].delta`, Anthropic's `delta` object, a Responses event's `delta` string.
const DELTA: u8 = 9;
const MESSAGE: u8 = 10;
/// A string of generated text, reasoning or tool arguments: content when not empty.
const TEXT: u8 = 11;
/// A tool call container: content when present.
const TOOLS: u8 = 12;
const ERROR: u8 = 13;
const TYPE: u8 = 14;
const RESPONSE: u8 = 15;
const STATUS: u8 = 16;
const INCOMPLETE: u8 = 17;
const REASON: u8 = 18;
/// A Responses `output` array.
const OUTPUT: u8 = 19;
/// An array of content blocks: Anthropic `content`, Responses `content` and `summary`.
const BLOCKS: u8 = 20;

// === impl OpenAiReader ===

impl OpenAiReader {
    /// A reader for a streamed (`text/event-stream`) answer. Choose by the response's
    /// Content-Type, not the request's `stream`: an early error is a plain JSON body, which
    /// SSE framing would skip as a line of no field.
    pub fn stream() -> Self {
        OpenAiReader {
            framing: Framing::Sse(SseReader::new()),
            state: OpenAiVisitor::default(),
        }
    }

    /// A reader for a non-streamed (`application/json`) answer: one object.
    pub fn json() -> Self {
        OpenAiReader {
            framing: Framing::Json(JsonScan::new()),
            state: OpenAiVisitor {
                single_object: true,
                ..OpenAiVisitor::default()
            },
        }
    }

    /// Reads the next chunk of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.framing {
            Framing::Sse(sse) => {
                sse.feed(chunk, &mut self.state);
                if sse.done_seen() {
                    self.state.reading.complete = true;
                }
            }
            Framing::Json(scan) => scan.feed(chunk, &mut self.state),
        }
    }

    pub fn reading(&self) -> &Reading {
        &self.state.reading
    }
}

// === impl OpenAiVisitor ===

impl Visitor for OpenAiVisitor {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        match path {
            [] => match key {
                b"model" => MODEL,
                b"usage" => USAGE,
                b"choices" => CHOICES,
                b"error" => ERROR,
                b"type" => TYPE,
                b"stop_reason" => FINISH,
                b"message" => MESSAGE,
                b"delta" => DELTA,
                b"response" => RESPONSE,
                b"status" => STATUS,
                b"incomplete_details" => INCOMPLETE,
                b"output" => OUTPUT,
                b"content" => BLOCKS,
                _ => 0,
            },
            [USAGE] | [RESPONSE | MESSAGE, USAGE] => match key {
                b"prompt_tokens" | b"input_tokens" => PROMPT_TOKENS,
                b"completion_tokens" | b"output_tokens" => COMPLETION_TOKENS,
                b"cache_read_input_tokens" => CACHED_TOKENS,
                b"prompt_tokens_details" | b"input_tokens_details" => DETAILS,
                _ => 0,
            },
            [.., USAGE, DETAILS] if key == b"cached_tokens" => CACHED_TOKENS,
            [CHOICES, CHOICES] => match key {
                b"finish_reason" => FINISH,
                b"text" => TEXT,
                b"delta" => DELTA,
                b"message" => MESSAGE,
                _ => 0,
            },
            [CHOICES, CHOICES, DELTA | MESSAGE] => match key {
                b"content" | b"reasoning" => TEXT,
                b"tool_calls" => TOOLS,
                _ => 0,
            },
            [DELTA] => match key {
                b"text" | b"thinking" | b"partial_json" => TEXT,
                b"stop_reason" => FINISH,
                _ => 0,
            },
            [MESSAGE] => match key {
                b"model" => MODEL,
                b"usage" => USAGE,
                _ => 0,
            },
            [RESPONSE] => match key {
                b"model" => MODEL,
                b"usage" => USAGE,
                b"status" => STATUS,
                b"incomplete_details" => INCOMPLETE,
                b"output" => OUTPUT,
                _ => 0,
            },
            [INCOMPLETE] | [RESPONSE, INCOMPLETE] if key == b"reason" => REASON,
            [OUTPUT, OUTPUT] | [RESPONSE, OUTPUT, OUTPUT] => match key {
                b"content" | b"summary" => BLOCKS,
                b"arguments" => TEXT,
                _ => 0,
            },
            [.., OUTPUT, OUTPUT, BLOCKS, BLOCKS] if key == b"text" => TEXT,
            [BLOCKS, BLOCKS] => match key {
                b"text" | b"thinking" => TEXT,
                b"input" => TOOLS,
                _ => 0,
            },
            _ => 0,
        }
    }

    fn value(&mut self, path: &[u8], value: Value<'_>) {
        let c = &mut self.cur;
        let num = match value {
            Value::Raw(r) => parse_u64(r),
            _ => None,
        };
        match (*path.last().unwrap_or(&0), value) {
            (MODEL, Value::Str(s)) if self.reading.model.is_none() => {
                self.reading.model = Some(String::from_utf8_lossy(s).into_owned());
            }
            (PROMPT_TOKENS, _) => c.usage.prompt_tokens = num.or(c.usage.prompt_tokens),
            (COMPLETION_TOKENS, _) => {
                c.usage.completion_tokens = num.or(c.usage.completion_tokens);
            }
            (CACHED_TOKENS, _) => {
                c.usage.cached_prompt_tokens = num.or(c.usage.cached_prompt_tokens);
            }
            (FINISH, Value::Str(s)) => c.finish = Some(FinishReason::parse(s)),
            (TEXT | DELTA, Value::Str(s)) => c.content |= !s.is_empty(),
            (TOOLS, Value::Container) => c.content = true,
            (ERROR, v) => c.error |= v != Value::Raw(b"null"),
            (TYPE, Value::Str(s)) => c.event = Event::parse(s),
            (STATUS, Value::Str(s)) => c.status = Some(ResponseStatus::parse(s)),
            (REASON, Value::Str(s)) => c.incomplete_reason = Some(FinishReason::parse(s)),
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
        let u = &mut r.usage;
        u.prompt_tokens = cur.usage.prompt_tokens.or(u.prompt_tokens);
        u.completion_tokens = cur.usage.completion_tokens.or(u.completion_tokens);
        u.cached_prompt_tokens = cur.usage.cached_prompt_tokens.or(u.cached_prompt_tokens);
        let finish = match cur.status {
            Some(ResponseStatus::Completed) => Some(FinishReason::Stop),
            Some(ResponseStatus::Incomplete) => {
                Some(cur.incomplete_reason.unwrap_or(FinishReason::Other))
            }
            _ => cur.finish,
        };
        if finish.is_some() {
            r.finish_reason = finish;
        }
        if cur.error || cur.event == Event::Error || cur.status == Some(ResponseStatus::Failed) {
            r.error = true;
        } else if cur.event == Event::End || self.single_object {
            r.complete = true;
        }
    }

    fn abort_object(&mut self) {
        self.cur = Current::default();
    }
}

// === impl Event ===

impl Event {
    fn parse(s: &[u8]) -> Self {
        match s {
            b"response.completed" | b"response.incomplete" | b"message_stop" => Event::End,
            b"error" | b"response.failed" => Event::Error,
            _ => Event::Other,
        }
    }
}

// === impl ResponseStatus ===

impl ResponseStatus {
    fn parse(s: &[u8]) -> Self {
        match s {
            b"completed" => ResponseStatus::Completed,
            b"incomplete" => ResponseStatus::Incomplete,
            b"failed" => ResponseStatus::Failed,
            _ => ResponseStatus::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use FinishReason::{Length, Stop, ToolCalls};

    fn read(json: bool, chunks: &[&[u8]]) -> Reading {
        let mut r = if json {
            OpenAiReader::json()
        } else {
            OpenAiReader::stream()
        };
        for c in chunks {
            r.feed(c);
        }
        r.reading().clone()
    }

    /// The same reading whole, split at every byte, byte by byte, with `\n` or `\r\n`.
    fn check(json: bool, body: &str, want: &Reading) {
        for body in [body.to_string(), body.replace('\n', "\r\n")] {
            let b = body.as_bytes();
            let crlf = b.contains(&b'\r');
            assert_eq!(&read(json, &[b]), want, "whole, crlf: {crlf}");
            for at in 0..=b.len() {
                let (x, y) = b.split_at(at);
                assert_eq!(&read(json, &[x, y]), want, "split at {at}, crlf: {crlf}");
            }
            let bytes: Vec<&[u8]> = b.chunks(1).collect();
            assert_eq!(&read(json, &bytes), want, "byte by byte, crlf: {crlf}");
        }
    }

    fn tokens(prompt: Option<u64>, completion: Option<u64>, cached: Option<u64>) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_prompt_tokens: cached,
            ..Usage::default()
        }
    }

    /// A whole answer that generated content.
    fn answer(model: &str, usage: Usage, finish: Option<FinishReason>) -> Reading {
        Reading {
            complete: true,
            error: false,
            model: Some(model.into()),
            content_seen: true,
            usage,
            finish_reason: finish,
        }
    }

    fn failure(model: Option<&str>, content_seen: bool) -> Reading {
        Reading {
            error: true,
            model: model.map(Into::into),
            content_seen,
            ..Reading::default()
        }
    }

    const STREAM: bool = false;
    const JSON: bool = true;

    #[test]
    fn chat_stream_with_include_usage_reads_the_usage_chunk() {
        let want = answer("llama3.2", tokens(Some(26), Some(9), None), Some(Stop));
        check(STREAM, CHAT_STREAM_USAGE, &want);
    }

    #[test]
    fn chat_stream_without_include_usage_has_no_tokens_but_succeeds() {
        let want = answer("qwen2.5:0.5b", Usage::default(), Some(Length));
        check(STREAM, CHAT_STREAM, &want);
    }

    #[test]
    fn chat_stream_reasoning_and_tool_calls_are_content_and_cached_tokens_count() {
        let want = answer(
            "qwen3:8b",
            tokens(Some(88), Some(31), Some(64)),
            Some(ToolCalls),
        );
        check(STREAM, CHAT_STREAM_TOOLS, &want);
    }

    #[test]
    fn chat_json_is_one_whole_answer() {
        let want = answer("llama3.2", tokens(Some(26), Some(7), None), Some(Stop));
        check(JSON, CHAT_JSON, &want);
    }

    #[test]
    fn chat_stream_error_event_fails_the_answer() {
        check(STREAM, CHAT_STREAM_ERROR, &failure(Some("llama3.2"), true));
    }

    #[test]
    fn openai_404_body_is_an_error_not_an_answer() {
        check(JSON, OPENAI_NOT_FOUND, &failure(None, false));
    }

    #[test]
    fn completions_stream_takes_the_last_usage_not_the_zeros() {
        let want = answer("llama3.2", tokens(Some(30), Some(12), None), Some(Stop));
        check(STREAM, COMPLETIONS_STREAM_USAGE, &want);
    }

    #[test]
    fn completions_stream_without_include_usage_has_no_tokens_but_succeeds() {
        let want = answer("qwen2.5-coder:1.5b", Usage::default(), Some(Stop));
        check(STREAM, COMPLETIONS_STREAM, &want);
    }

    #[test]
    fn completions_json_cut_by_max_tokens_is_length() {
        let want = answer("llama3.2", tokens(Some(30), Some(16), None), Some(Length));
        check(JSON, COMPLETIONS_JSON, &want);
    }

    #[test]
    fn embeddings_count_prompt_tokens_and_generate_no_content() {
        let want = Reading {
            content_seen: false,
            ..answer("all-minilm", tokens(Some(8), None, None), None)
        };
        check(JSON, EMBEDDINGS_JSON, &want);
        check(JSON, EMBEDDINGS_BAD_REQUEST, &failure(None, false));
    }

    #[test]
    fn responses_stream_reads_usage_from_response_completed() {
        let want = answer("qwen3:0.6b", tokens(Some(14), Some(4), Some(0)), Some(Stop));
        check(STREAM, RESPONSES_STREAM, &want);
    }

    #[test]
    fn responses_stream_incomplete_ends_the_answer_with_its_reason() {
        let want = answer(
            "gpt-oss:20b",
            tokens(Some(21), Some(16), Some(16)),
            Some(Length),
        );
        check(STREAM, RESPONSES_STREAM_INCOMPLETE, &want);
    }

    #[test]
    fn responses_json_reads_top_level_usage_and_output_text() {
        let want = answer(
            "qwen3:0.6b",
            tokens(Some(11), Some(23), Some(0)),
            Some(Stop),
        );
        check(JSON, RESPONSES_JSON, &want);
    }

    #[test]
    fn responses_stream_failed_is_an_error() {
        check(
            STREAM,
            RESPONSES_STREAM_FAILED,
            &failure(Some("llama3.2"), true),
        );
    }

    #[test]
    fn responses_stream_error_event_is_an_error() {
        check(
            STREAM,
            RESPONSES_STREAM_ERROR,
            &failure(Some("llama3.2"), false),
        );
    }

    #[test]
    fn messages_stream_merges_message_start_and_message_delta_usage() {
        let want = answer("llama3.2", tokens(Some(31), Some(8), None), Some(Stop));
        check(STREAM, MESSAGES_STREAM, &want);
    }

    #[test]
    fn messages_stream_keeps_start_input_and_cache_read_when_delta_has_only_output() {
        let usage = tokens(Some(472), Some(89), Some(384));
        let want = answer("claude-sonnet-4-5", usage, Some(ToolCalls));
        check(STREAM, MESSAGES_STREAM_TOOL_USE, &want);
    }

    #[test]
    fn messages_json_is_one_whole_answer() {
        let want = answer("llama3.2", tokens(Some(14), Some(10), None), Some(Stop));
        check(JSON, MESSAGES_JSON, &want);
    }

    #[test]
    fn messages_stream_error_event_fails_the_answer() {
        let want = Reading {
            usage: tokens(Some(12), Some(0), None),
            ..failure(Some("llama3.2"), true)
        };
        check(STREAM, MESSAGES_STREAM_ERROR, &want);
        check(JSON, MESSAGES_NOT_FOUND, &failure(None, false));
    }

    /// The 1-based number of the first SSE event after which content has been seen.
    fn first_content_event(body: &str) -> Option<usize> {
        let mut r = OpenAiReader::stream();
        body.split_inclusive("\n\n")
            .position(|event| {
                r.feed(event.as_bytes());
                r.reading().content_seen
            })
            .map(|i| i + 1)
    }

    #[test]
    fn content_is_seen_from_the_first_non_empty_delta_on() {
        assert_eq!(first_content_event(CHAT_STREAM_USAGE), Some(2));
        assert_eq!(first_content_event(CHAT_STREAM_TOOLS), Some(1));
        assert_eq!(first_content_event(COMPLETIONS_STREAM), Some(1));
        assert_eq!(first_content_event(RESPONSES_STREAM), Some(5));
        assert_eq!(first_content_event(RESPONSES_STREAM_INCOMPLETE), Some(2));
        assert_eq!(first_content_event(MESSAGES_STREAM), Some(4));
        assert_eq!(first_content_event(MESSAGES_STREAM_TOOL_USE), Some(4));
    }

    #[test]
    fn a_stream_cut_before_its_end_marker_is_not_complete() {
        for (body, end) in [
            (CHAT_STREAM_USAGE, "data: [DONE]\n\n"),
            (MESSAGES_STREAM, "event: message_stop\n"),
            (RESPONSES_STREAM, "event: response.completed\n"),
        ] {
            let cut = &body[..body.find(end).unwrap()];
            let r = read(STREAM, &[cut.as_bytes()]);
            assert!(!r.complete && !r.error && r.content_seen, "{cut}");
        }
        let r = read(STREAM, &[CHAT_STREAM_USAGE.trim_end().as_bytes()]);
        assert!(!r.complete, "[DONE] without its line end");
        let r = read(JSON, &[&CHAT_JSON.as_bytes()[..CHAT_JSON.len() - 3]]);
        assert!(!r.complete && !r.content_seen && r.usage == Usage::default());
    }

    #[test]
    fn tool_calls_alone_are_content_and_empty_values_are_not() {
        let r = read(STREAM, &[br#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}"#, b"\n\n"]);
        assert!(r.content_seen);
        let r = read(STREAM, &[br#"data: {"choices":[{"index":0,"text":"","delta":{"role":"assistant","content":"","reasoning":"","tool_calls":null},"finish_reason":null}],"delta":""}"#, b"\n\n"]);
        assert!(!r.content_seen);
        let r = read(JSON, &[br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]}}]}"#]);
        assert!(r.content_seen);
        let r = read(JSON, &[br#"{"content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use"}"#]);
        assert!(r.content_seen && r.finish_reason == Some(ToolCalls));
        let r = read(JSON, &[br#"{"status":"completed","output":[{"type":"function_call","name":"f","arguments":"{\"a\":1}"}]}"#]);
        assert!(r.content_seen && r.finish_reason == Some(Stop));
        let r = read(JSON, &[br#"{"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":""}]}]}"#]);
        assert!(!r.content_seen);
    }

    #[test]
    fn a_null_usage_or_count_keeps_the_counts_read_so_far() {
        let r = read(STREAM, &[
            b"data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            b"data: {\"usage\":null}\n\ndata: {\"usage\":{\"prompt_tokens\":null,\"completion_tokens\":3}}\n\n",
        ]);
        assert_eq!(r.usage, tokens(Some(5), Some(3), None));
    }

    #[test]
    fn an_in_progress_response_sets_no_finish_reason() {
        let created = RESPONSES_STREAM.split_inclusive("\n\n").next().unwrap();
        let r = read(STREAM, &[created.as_bytes()]);
        assert_eq!(r.finish_reason, None);
        assert!(!r.complete && !r.error && !r.content_seen);
        assert_eq!(r.model.as_deref(), Some("qwen3:0.6b"));
    }

    #[test]
    fn an_error_is_not_undone_by_a_later_done() {
        let body = format!("{CHAT_STREAM_ERROR}data: [DONE]\n\n");
        let r = read(STREAM, &[body.as_bytes()]);
        assert!(r.complete && r.error && !r.succeeded());
    }

    #[test]
    fn the_first_model_named_wins() {
        let r = read(
            STREAM,
            &[b"data: {\"model\":\"a\"}\n\ndata: {\"model\":\"b\"}\n\n"],
        );
        assert_eq!(r.model.as_deref(), Some("a"));
    }

    #[test]
    fn fields_inside_strings_and_nested_objects_are_ignored() {
        let body = br#"data: {"choices":[{"delta":{"content":"{\"error\":1,\"type\":\"message_stop\"}"}}],"x":{"error":{},"usage":{"prompt_tokens":9},"type":"error"}}"#;
        let r = read(STREAM, &[body, b"\n\n"]);
        assert!(!r.error && !r.complete && r.content_seen);
        assert_eq!(r.usage, Usage::default());
    }

    #[test]
    fn a_null_error_member_is_not_an_error() {
        let r = read(
            JSON,
            &[br#"{"status":"completed","error":null,"usage":{"input_tokens":1}}"#],
        );
        assert!(r.succeeded());
    }
}
