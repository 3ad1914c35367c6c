//! The `include_usage` option: asks Ollama for the token counts of a streamed
//! `/v1/chat/completions` answer, then removes them before the client sees them.
//!
//! [`inject`] adds `stream_options.include_usage` to a streamed chat request that has no
//! `stream_options`; [`UsageStripper`] removes the one extra SSE event this causes (`"choices":[]`
//! with a `usage` object) after the tap has read it, so the client gets exactly what it asked for.
//!
//! The trade-off: the backend computes and sends one more chunk per streamed request, and the
//! agent holds each SSE event until its end (typically one network chunk, so the cadence is
//! unchanged; at most one event of [`MAX_EVENT`] bytes). If the client itself set
//! `stream_options`, nothing is injected nor stripped: the option changes nothing for it.
//!
//! Scope: `/v1/chat/completions` only. On `/v1/completions` Ollama then puts a zero usage object
//! into every chunk, which cannot be removed without rewriting each chunk: left alone.

use memchr::{memchr, memchr3_iter, memchr_iter, memmem};

use super::json_scan::{JsonScan, Value, Visitor};

/// What [`inject`] inserts right after the opening `{` of the request object.
pub const INJECTED: &[u8] = br#""stream_options":{"include_usage":true},"#;
/// Largest event held for a decision; a longer one passes unchanged (it is not a usage chunk).
pub const MAX_EVENT: usize = 64 * 1024;

/// Incremental SSE filter removing the usage event; see the module doc.
#[derive(Debug, Default)]
pub struct UsageStripper {
    /// The bytes of the current event received so far, while it is held.
    held: Vec<u8>,
    /// The current event outgrew [`MAX_EVENT`]: its bytes pass until it ends.
    passing: bool,
    /// What the current line holds so far (an empty line ends the event).
    line: Line,
}

#[derive(Debug, Default, Clone, Copy)]
enum Line {
    #[default]
    Empty,
    /// Only a `\r`.
    Cr,
    Text,
}

/// The visitor: the top-level keys that matter on either side.
#[derive(Default)]
struct TopKeys {
    /// The last `stream` member is the literal `true`.
    stream: bool,
    /// A key that is, or might decode to, `stream_options` or `stream`.
    doubt: bool,
    /// Id of the key whose container opened during the last feed (see [`scan_object`]).
    opened: u8,
    choices_empty: bool,
    usage_object: bool,
}

const STREAM: u8 = 1;
const DOUBT: u8 = 2;
const CHOICES: u8 = 3;
const USAGE: u8 = 4;

// === impl inject ===

/// The request body with `stream_options.include_usage` added, when `body` is exactly one JSON
/// object whose top-level `stream` is `true` and which has no `stream_options`; else `None`
/// (forward unchanged). Every byte is kept, [`INJECTED`] goes after the first `{`: a new length.
///
/// Keys are matched as Ollama's Go decoder does (ASCII case-insensitively, last one wins); a
/// top-level key with an escape or a non-ASCII byte might decode to either key, so none is added.
pub fn inject(body: &[u8]) -> Option<Vec<u8>> {
    let keys = scan_object(body)?;
    if !keys.stream || keys.doubt {
        return None;
    }
    let open = body.iter().position(|&b| b == b'{')? + 1;
    Some([&body[..open], INJECTED, &body[open..]].concat())
}

// === impl UsageStripper ===

impl UsageStripper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends to `out` what the client gets of `chunk`: every byte of the events decided so
    /// far, except the usage event. The bytes of an unfinished event are held.
    pub fn filter(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        // `chunk[kept..start]` is a run of kept bytes not yet copied to `out`; `chunk[start..]`
        // is the current event; `chunk[line..]` the current line.
        let (mut kept, mut start, mut line) = (0, 0, 0);
        for nl in memchr_iter(b'\n', chunk) {
            let blank = matches!(
                (self.line, &chunk[line..nl]),
                (Line::Empty, b"" | b"\r") | (Line::Cr, b"")
            );
            (self.line, line) = (Line::Empty, nl + 1);
            if !blank {
                continue;
            }
            let end = line;
            if self.passing {
                self.passing = false;
            } else if !self.held.is_empty() {
                // Only the first event of a chunk can have held bytes: `kept == start == 0`.
                if self.held.len() + end - start > MAX_EVENT {
                    out.extend_from_slice(&self.held);
                } else {
                    self.held.extend_from_slice(&chunk[start..end]);
                    if !is_usage_event(&self.held) {
                        out.extend_from_slice(&self.held);
                    }
                    kept = end;
                }
                self.held.clear();
            } else if end - start <= MAX_EVENT && is_usage_event(&chunk[start..end]) {
                out.extend_from_slice(&chunk[kept..start]);
                kept = end;
            }
            start = end;
        }
        self.line = match (self.line, &chunk[line..]) {
            (state, b"") => state,
            (Line::Empty, b"\r") => Line::Cr,
            _ => Line::Text,
        };
        // Held bytes are left only when no event ended in this chunk: then `kept == start`.
        out.extend_from_slice(&chunk[kept..start]);
        let tail = &chunk[start..];
        if self.passing || self.held.len() + tail.len() > MAX_EVENT {
            self.passing = true;
            out.extend_from_slice(&self.held);
            out.extend_from_slice(tail);
            self.held.clear();
        } else {
            self.held.extend_from_slice(tail);
        }
    }

    /// The stream ended: appends the held bytes of an unfinished event, unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.passing = false;
        self.line = Line::Empty;
    }
}

/// Whether `event` (its lines and the blank line ending it) is exactly one `data:` line holding
/// one JSON object with a top-level `"choices":[]` and a top-level `usage` object.
fn is_usage_event(event: &[u8]) -> bool {
    if memmem::find(event, b"\"usage\"").is_none() {
        return false; // the common case: a content chunk
    }
    let Some(nl) = memchr(b'\n', event) else {
        return false;
    };
    if !matches!(&event[nl + 1..], b"\n" | b"\r\n") {
        return false; // more than one line: not the plain usage chunk
    }
    let line = &event[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix(b"data:")
        .and_then(scan_object)
        .is_some_and(|k| k.choices_empty && k.usage_object)
}

// === impl TopKeys ===

/// The top-level keys of `bytes` when it is exactly one JSON object, with JSON whitespace around
/// it; `None` for anything else (invalid, several values, not an object).
///
/// Every `{`, `[` and `}` byte ends a feed, so a container the visitor hears of opens at the
/// last byte fed: this tells an object from an array and an empty array from another.
fn scan_object(bytes: &[u8]) -> Option<TopKeys> {
    let first = bytes.iter().position(|&b| !is_ws(b))?;
    let last = bytes.iter().rposition(|&b| !is_ws(b))?;
    if bytes[first] != b'{' || bytes[last] != b'}' {
        return None;
    }
    let (mut scan, mut keys, mut from) = (JsonScan::new(), TopKeys::default(), first);
    for at in memchr3_iter(b'{', b'[', b'}', &bytes[first..=last]).map(|i| i + first) {
        scan.feed(&bytes[from..=at], &mut keys);
        from = at + 1;
        match std::mem::take(&mut keys.opened) {
            CHOICES => {
                let next = bytes[from..].iter().find(|&&b| !is_ws(b));
                keys.choices_empty = bytes[at] == b'[' && next == Some(&b']');
            }
            USAGE => keys.usage_object = bytes[at] == b'{',
            _ => {}
        }
        if scan.at_top() && at != last {
            return None; // the object closed (or broke) before the end
        }
    }
    (!scan.invalid && scan.at_top()).then_some(keys)
}

impl Visitor for TopKeys {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        let odd = || key.iter().any(|&b| b == b'\\' || b >= 0x80);
        match key {
            _ if !path.is_empty() => 0,
            _ if key.eq_ignore_ascii_case(b"stream") => STREAM,
            _ if key.eq_ignore_ascii_case(b"stream_options") || odd() => DOUBT,
            b"choices" => CHOICES,
            b"usage" => USAGE,
            _ => 0,
        }
    }

    fn value(&mut self, path: &[u8], value: Value<'_>) {
        match (path, value) {
            ([STREAM], v) => self.stream = v == Value::Raw(b"true"),
            ([DOUBT], _) => self.doubt = true,
            ([CHOICES], Value::Container) => self.opened = CHOICES,
            ([CHOICES], _) => self.choices_empty = false,
            ([USAGE], Value::Container) => self.opened = USAGE,
            ([USAGE], _) => self.usage_object = false,
            _ => {}
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    /// `inject` gives the body plus `stream_options`, every other byte as it was.
    fn injects(body: &str) {
        let (body, out) = (body.as_bytes(), inject(body.as_bytes()).expect("injected"));
        let mut want: Json = serde_json::from_slice(body).unwrap();
        want["stream_options"] = serde_json::json!({ "include_usage": true });
        assert_eq!(serde_json::from_slice::<Json>(&out).unwrap(), want);
        let open = body.iter().position(|&b| b == b'{').unwrap() + 1;
        assert_eq!(out, [&body[..open], INJECTED, &body[open..]].concat());
    }

    #[test]
    fn inject_adds_include_usage_after_the_brace_of_streaming_bodies_read_as_go_does() {
        injects(
            r#"{"model":"llama3.2","messages":[{"role":"user","content":"Hi"}],"stream":true}"#,
        );
        injects(
            "\r\n  {\n  \"model\": \"qwen2.5:0.5b\",\n  \"messages\": [\n    {\"role\": \"user\", \"content\": \"x\"}\n  ],\n  \"stream\" : true\n}\n",
        );
        // Ollama's decoder: the last `stream` key wins, matched ASCII case-insensitively
        injects(r#"{"stream":false,"model":"m","stream":true}"#);
        injects(r#"{"Stream":true,"model":"m"}"#);
    }

    #[test]
    fn inject_leaves_non_streaming_already_optioned_and_invalid_bodies_alone() {
        for body in [
            // not streaming, or `stream` nested in a message or in options only
            r#"{"model":"m","stream":false}"#,
            r#"{"model":"m","stream":true,"STREAM":false}"#,
            r#"{"model":"m","stream":"true"}"#,
            r#"{"model":"m","messages":[{"role":"user","stream":true}],"options":{"stream":true}}"#,
            "{}",
            // any `stream_options` already
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream_options":{},"stream":true}"#,
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"Stream_Options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream\u005foptions":{"include_usage":true}}"#,
            // invalid JSON or not one object
            r#"{"model":"m","stream":true"#,
            r#"{"model":"m","stream":true} x }"#,
            r#"{"stream":true}{"stream":true}"#,
            "{\"model\":\"a\nb\",\"stream\":true}",
            r#"{"model" "m","stream":true}"#,
            r#"[{"stream":true}]"#,
            r#"x{"stream":true}"#,
            r#""{\"stream\":true}""#,
            "",
        ] {
            assert_eq!(inject(body.as_bytes()), None, "{body}");
        }
    }

    const HEAD: &str = r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1729000000,"model":"llama3.2","system_fingerprint":"fp_ollama","#;
    const USAGE_CHUNK: &str =
        r#""choices":[],"usage":{"prompt_tokens":26,"completion_tokens":7,"total_tokens":33}}"#;

    /// The events joined as an SSE stream with line end `eol`.
    fn sse<S: AsRef<str>>(events: &[S], eol: &str) -> Vec<u8> {
        let each = |e: &S| format!("{}{eol}{eol}", e.as_ref()).into_bytes();
        events.iter().flat_map(each).collect()
    }

    /// The events of a streamed Ollama chat answer: role, content, finish, [usage,] `[DONE]`.
    fn chat(usage: bool) -> Vec<String> {
        let chunk = |delta: &str, finish: &str| {
            format!(r#"{HEAD}"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#)
        };
        let mut events = vec![
            chunk(r#"{"role":"assistant","content":""}"#, "null"),
            chunk(r#"{"content":"Hel"}"#, "null"),
            chunk(r#"{"content":"lo \"usage\": []"}"#, "null"),
            chunk("{}", r#""stop""#),
        ];
        events.extend(usage.then(|| format!("{HEAD}{USAGE_CHUNK}")));
        events.push("data: [DONE]".into());
        events
    }

    fn strip(chunks: &[&[u8]]) -> Vec<u8> {
        let (mut s, mut out) = (UsageStripper::new(), Vec::new());
        chunks.iter().for_each(|c| s.filter(c, &mut out));
        s.finish(&mut out);
        out
    }

    /// `input` gives `want` fed whole, split in two at every position, and byte by byte.
    fn strips_to(input: &[u8], want: &[u8]) {
        assert_eq!(strip(&[input]), want);
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(strip(&[a, b]), want, "split at {at}");
        }
        assert_eq!(strip(&input.chunks(1).collect::<Vec<_>>()), want);
    }

    #[test]
    fn stripper_removes_only_the_usage_event_however_the_stream_is_split() {
        for eol in ["\n", "\r\n"] {
            strips_to(&sse(&chat(true), eol), &sse(&chat(false), eol));
        }
    }

    #[test]
    fn stripper_passes_a_stream_without_usage_event_byte_for_byte() {
        let input = sse(&chat(false), "\n");
        strips_to(&input, &input);
        let odd = b"\n\ndata: x\n\n: comment\n\n\r\n";
        strips_to(odd, odd);
    }

    #[test]
    fn stripper_keeps_events_that_only_resemble_the_usage_event() {
        let lookalikes = [
            r#"data: {"choices":[{}],"usage":{"prompt_tokens":1}}"#,
            r#"data: {"choices":[{"text":"a"}],"usage":{"prompt_tokens":0,"completion_tokens":0}}"#,
            r#"data: {"choices":[],"usage":null}"#,
            r#"data: {"choices":[],"usage":[]}"#,
            r#"data: {"choices":{},"usage":{}}"#,
            r#"data: {"choices":[],"x":{"usage":{}}}"#,
            r#"data: {"choices":[],"usage":{}} x }"#,
            "id: 7\ndata: {\"choices\":[],\"usage\":{}}",
            "data: {\"choices\":[],\ndata: \"usage\":{}}",
        ];
        let input = sse(&lookalikes, "\n");
        strips_to(&input, &input);
        let minimal = r#"data:{ "choices" : [ ] , "usage" : { } }"#;
        assert_eq!(strip(&[&sse(&[minimal, "x"], "\n")]), sse(&["x"], "\n"));
    }

    #[test]
    fn stripper_passes_an_oversized_event_unchanged() {
        let pad = "x".repeat(MAX_EVENT);
        let big = format!(r#"data: {{"choices":[],"usage":{{}},"pad":"{pad}"}}"#);
        let input = sse(&[&big, &format!("{HEAD}{USAGE_CHUNK}")], "\n");
        let want = sse(&[&big], "\n");
        assert_eq!(strip(&[&input]), want);
        assert_eq!(strip(&input.chunks(1000).collect::<Vec<_>>()), want);
        let (mut s, mut out) = (UsageStripper::new(), Vec::new());
        let part = &input[..big.len() - 10];
        s.filter(part, &mut out);
        assert_eq!(out, part, "an oversized event is not held");
    }

    #[test]
    fn finish_flushes_a_trailing_incomplete_event_unchanged() {
        let mut input = sse(&chat(false)[..2], "\n");
        input.extend_from_slice(format!("{HEAD}{USAGE_CHUNK}\n").as_bytes());
        strips_to(&input, &input);
    }

    #[test]
    fn complete_events_leave_in_the_same_call_and_only_the_open_one_is_held() {
        let (events, mut s, mut out) = (chat(true), UsageStripper::new(), Vec::new());
        let two = sse(&events[..2], "\n");
        s.filter(&two, &mut out);
        assert_eq!(out, two);
        let stop = sse(&events[3..4], "\n");
        s.filter(&stop[..40], &mut out);
        assert_eq!(out.len(), two.len());
        s.filter(&stop[40..], &mut out);
        assert_eq!(out[two.len()..], stop);
        s.filter(&sse(&events[4..], "\n"), &mut out);
        assert_eq!(out[two.len() + stop.len()..], sse(&events[5..], "\n"));
    }
}
