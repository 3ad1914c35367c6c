//! The reader of Ollama's native answers (`/api/generate`, `/api/chat`, `/api/embed`): a pure
//! function over the response bytes, split anywhere, that finds the final `done: true` object's
//! stats (for `/api/embed`, the one object's) and any `{"error": ...}` line.
//!
//! The same reader serves a streamed NDJSON answer and a single `stream: false` object: both
//! are a sequence of top-level objects to [`JsonScan`].

use super::json_scan::{JsonScan, Value, Visitor};
use super::progress_line::{could_be_progress, is_progress_line};
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
mod tests;
