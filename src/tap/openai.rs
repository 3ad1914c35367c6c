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
use super::reading::{parse_u64, Reading};
use super::sse::SseReader;
use crate::vocab::{FinishReason, Usage};

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
mod tests;
