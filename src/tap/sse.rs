//! An incremental Server-Sent-Events framer: feeds on bytes split anywhere and passes the
//! payload of every `data:` line to a [`JsonScan`], without buffering lines.
//!
//! Framing follows the SSE spec (`text/event-stream`): a line is `field: value` or
//! `field:value` (exactly one space after the colon belongs to the framing), lines end with
//! `\n`, `\r\n` or a lone `\r`, and a blank line ends an event. Only `data` matters here;
//! `event:`, `id:`, `retry:`, unknown fields and comments (lines starting with `:`) are skipped
//! as they stream past. The literal payload `[DONE]` (the OpenAI end marker) is recorded
//! ([`SseReader::done_seen`]) and not passed on.
//!
//! Memory is bounded: the only state besides the [`JsonScan`] is how much of the field name
//! `data` (or of the payload `[DONE]`) has been matched so far. A payload is therefore never
//! joined in a buffer: the `data:` lines of one event reach the scanner in order, each followed
//! by a `\n`, exactly as the spec joins them, and to JSON that newline is whitespace. A raw
//! newline *inside a JSON string* split across `data:` lines is thus not supported (the
//! scanner treats it as invalid JSON); no JSON encoder produces one, and Ollama always sends a
//! payload on a single line. An event that ends (blank line) with its object still open is
//! abandoned, so one broken event cannot swallow the next. A UTF-8 byte-order mark at the very
//! start of the stream is not stripped (Ollama never sends one): it only costs the first line.

use memchr::memchr2;

use super::json_scan::{JsonScan, Visitor};

/// The only field whose value is read.
const DATA: &[u8] = b"data";
/// The payload that ends an OpenAI stream.
const DONE: &[u8] = b"[DONE]";

/// Incremental SSE reader: feed it every body chunk in order, with the visitor of its payloads.
#[derive(Default)]
pub struct SseReader {
    state: State,
    /// The last byte seen was a `\r` that ended a line: a `\n` right after it is part of it.
    after_cr: bool,
    done: bool,
    scan: JsonScan,
}

/// Where the framer is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the field name: this many bytes of `data` matched (0 at the start of a line).
    Name(u8),
    /// Right after `data:`: one optional space belongs to the framing.
    Colon,
    /// At the start of a data payload: this many bytes of `[DONE]` matched and held back.
    Done(u8),
    /// In a data payload that is not `[DONE]`: passed through to the JSON scanner.
    Payload,
    /// In a line that is not a data line: skipped.
    Skip,
}

// === impl SseReader ===

impl Default for State {
    fn default() -> Self {
        State::Name(0)
    }
}

impl SseReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a `data: [DONE]` line has been seen.
    pub fn done_seen(&self) -> bool {
        self.done
    }

    /// Frames `bytes`, passing payload bytes to the scanner, which reports to `v`.
    pub fn feed<V: Visitor>(&mut self, bytes: &[u8], v: &mut V) {
        let mut i = 0;
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                i = 1;
            }
        }
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\n' || b == b'\r' {
                self.end_line(v);
                i += 1;
                if b == b'\r' {
                    match bytes.get(i) {
                        Some(b'\n') => i += 1,
                        Some(_) => {}
                        None => self.after_cr = true,
                    }
                }
                continue;
            }
            match self.state {
                State::Name(n) => {
                    let n = usize::from(n);
                    self.state = if n < DATA.len() && b == DATA[n] {
                        State::Name(n as u8 + 1)
                    } else if n == DATA.len() && b == b':' {
                        State::Colon
                    } else {
                        State::Skip
                    };
                    i += 1;
                }
                State::Colon => {
                    self.state = State::Done(0);
                    if b == b' ' {
                        i += 1;
                    }
                }
                State::Done(n) => {
                    let n = usize::from(n);
                    if n < DONE.len() && b == DONE[n] {
                        self.state = State::Done(n as u8 + 1);
                        i += 1;
                    } else {
                        // Not the end marker: pass on what was held back, then the rest.
                        self.scan.feed(&DONE[..n], v);
                        self.state = State::Payload;
                    }
                }
                State::Payload | State::Skip => {
                    let rest = &bytes[i..];
                    let len = memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
                    if self.state == State::Payload {
                        self.scan.feed(&rest[..len], v);
                    }
                    i += len;
                }
            }
        }
    }

    fn end_line<V: Visitor>(&mut self, v: &mut V) {
        match self.state {
            State::Name(0) => self.end_event(v),
            State::Done(n) if usize::from(n) == DONE.len() => self.done = true,
            State::Done(n) => {
                self.scan.feed(&DONE[..usize::from(n)], v);
                self.scan.feed(b"\n", v);
            }
            // `data` without a colon is a data line with an empty value.
            State::Name(4) | State::Colon | State::Payload => self.scan.feed(b"\n", v),
            State::Name(_) | State::Skip => {}
        }
        self.state = State::Name(0);
    }

    /// A blank line: the event is over, and so must be its payload.
    fn end_event<V: Visitor>(&mut self, v: &mut V) {
        if !self.scan.at_top() {
            v.abort_object();
            let mut scan = JsonScan::new();
            scan.invalid = true;
            self.scan = scan;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tap::json_scan::Value;

    /// Records every event as text, for exact assertions.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Visitor for Log {
        fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
            match (path, key) {
                ([], b"model") => 1,
                ([], b"n") => 2,
                _ => 0,
            }
        }
        fn value(&mut self, path: &[u8], value: Value<'_>) {
            let v = match value {
                Value::Str(s) => format!("s:{}", String::from_utf8_lossy(s)),
                Value::Raw(s) => format!("r:{}", String::from_utf8_lossy(s)),
                Value::Container => "c".to_string(),
            };
            self.0.push(format!("{}={v}", path[path.len() - 1]));
        }
        fn start_object(&mut self) {
            self.0.push("{".into());
        }
        fn end_object(&mut self) {
            self.0.push("}".into());
        }
        fn abort_object(&mut self) {
            self.0.push("abort".into());
        }
    }

    /// Reads `chunks` in order: the visitor's events and whether `[DONE]` was seen.
    fn read(chunks: &[&[u8]]) -> (Vec<String>, bool) {
        let mut r = SseReader::new();
        let mut log = Log::default();
        for c in chunks {
            r.feed(c, &mut log);
        }
        (log.0, r.done_seen())
    }

    fn events(s: &[&str]) -> Vec<String> {
        s.iter().map(|e| e.to_string()).collect()
    }

    /// Every kind of line, in one stream.
    const STREAM: &str = concat!(
        ": keep-alive comment\n",
        "retry: 3000\n",
        "\n",
        "event: message\n",
        "id: 7\n",
        "data: {\"model\":\"llama3.2\",\"n\":1}\n",
        "\n",
        "data:{\"n\":2}\n",
        "\n",
        "data: {\"n\":\n",
        "data: 3}\n",
        "\n",
        "event: done\n",
        "data: [DONE]\n",
        "\n",
    );

    fn stream_events() -> Vec<String> {
        events(&[
            "{",
            "1=s:llama3.2",
            "2=r:1",
            "}",
            "{",
            "2=r:2",
            "}",
            "{",
            "2=r:3",
            "}",
        ])
    }

    #[test]
    fn data_payloads_reach_the_scanner_and_other_lines_do_not() {
        assert_eq!(read(&[STREAM.as_bytes()]), (stream_events(), true));
    }

    #[test]
    fn same_events_at_every_split_point() {
        let b = STREAM.as_bytes();
        for at in 0..=b.len() {
            let (x, y) = b.split_at(at);
            assert_eq!(read(&[x, y]), (stream_events(), true), "split at {at}");
        }
    }

    #[test]
    fn same_events_byte_by_byte() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(read(&chunks), (stream_events(), true));
    }

    #[test]
    fn crlf_and_lone_cr_line_ends_frame_the_same() {
        for end in ["\r\n", "\r"] {
            let s = STREAM.replace('\n', end);
            let b = s.as_bytes();
            for at in 0..=b.len() {
                let (x, y) = b.split_at(at);
                assert_eq!(read(&[x, y]), (stream_events(), true), "{end:?} at {at}");
            }
            let chunks: Vec<&[u8]> = b.chunks(1).collect();
            assert_eq!(read(&chunks), (stream_events(), true), "{end:?} bytewise");
        }
    }

    #[test]
    fn only_one_space_after_the_colon_is_framing() {
        assert!(read(&[b"data:[DONE]\n\n"]).1);
        assert!(read(&[b"data: [DONE]\n\n"]).1);
        assert!(!read(&[b"data:  [DONE]\n\n"]).1);
        assert!(!read(&[b"data: [DONE] \n\n"]).1);
        assert!(!read(&[b"data: [DONE]x\n\n"]).1);
        // A JSON payload does not care about extra whitespace.
        assert_eq!(read(&[b"data:   {\"n\":1}\n\n"]).0, ["{", "2=r:1", "}"]);
    }

    #[test]
    fn done_needs_its_line_end() {
        assert!(!read(&[b"data: [DONE]"]).1);
        assert!(read(&[b"data: [DONE]", b"\r"]).1);
    }

    #[test]
    fn a_payload_that_starts_like_done_is_passed_on_whole() {
        let (ev, done) = read(&[
            b"data: [{\"n\":1}]\n\ndata: [DO",
            b"NE\n\ndata: {\"n\":2}\n\n",
        ]);
        assert_eq!(ev, ["{", "2=r:1", "}", "{", "2=r:2", "}"]);
        assert!(!done);
    }

    #[test]
    fn fields_that_only_look_like_data_are_skipped() {
        let body = concat!(
            "dat: {\"n\":1}\n",
            "database: {\"n\":2}\n",
            "data2: {\"n\":3}\n",
            " data: {\"n\":4}\n",
            "DATA: {\"n\":5}\n",
            ":data: {\"n\":6}\n",
            "event: {\"n\":7}\n",
            "data\n",
            "data: {\"n\":8}\n\n",
        );
        assert_eq!(read(&[body.as_bytes()]).0, ["{", "2=r:8", "}"]);
    }

    #[test]
    fn an_event_ended_inside_its_object_is_abandoned() {
        let body = "data: {\"model\":\"a\",\n\ndata: {\"model\":\"b\"}\n\n";
        assert_eq!(
            read(&[body.as_bytes()]).0,
            ["{", "1=s:a", "abort", "{", "1=s:b", "}"]
        );
    }

    #[test]
    fn a_raw_newline_inside_a_string_across_data_lines_is_invalid() {
        let body = "data: {\"model\":\"a\ndata: b\"}\n\ndata: {\"n\":1}\n\n";
        assert_eq!(
            read(&[body.as_bytes()]).0,
            ["{", "abort", "{", "2=r:1", "}"]
        );
    }

    #[test]
    fn huge_skipped_lines_and_payload_strings_cost_no_memory() {
        let big = "x".repeat(1 << 20);
        let body = format!(": {big}\nevent: {big}\ndata: {{\"s\":\"{big}\",\"n\":9}}\n\n");
        let mut r = SseReader::new();
        let mut log = Log::default();
        for c in body.as_bytes().chunks(4096) {
            r.feed(c, &mut log);
        }
        assert_eq!(log.0, ["{", "2=r:9", "}"]);
        assert!(std::mem::size_of::<SseReader>() < std::mem::size_of::<JsonScan>() + 16);
    }
}
