//! An incremental JSON scanner: feeds on bytes split anywhere and reports the fields a
//! [`Visitor`] asks for, without building a document and without buffering the stream.
//!
//! It walks a sequence of top-level objects (one JSON body, an NDJSON stream, or the `data:`
//! payloads of an SSE stream) and tracks only structure: the container stack (as a bit set,
//! `MAX_DEPTH` deep), whether it is inside a string, and the key ids of the first
//! [`MAX_PATH`] levels. Memory is fixed: one buffer of [`CAP`] bytes for the key or captured
//! value being read, whatever the size of the input or of a single line.
//!
//! Bad input never panics: an unexpected byte abandons the current object (the visitor is told
//! through [`Visitor::abort_object`]) and scanning resumes at the next `{` at top level. A raw
//! newline inside a string is invalid JSON and also resynchronises, which is what keeps one
//! garbage NDJSON line from swallowing the lines after it.

use memchr::memchr2;

/// Longest key or captured value kept, in bytes. Longer values are truncated (and flagged).
pub const CAP: usize = 256;
/// Deepest nesting followed; anything deeper is treated as invalid input.
const MAX_DEPTH: u32 = 64;
/// Deepest level whose keys are reported to the visitor.
pub const MAX_PATH: usize = 6;

/// What a captured value looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string's content between the quotes, escapes left as written (at most [`CAP`] bytes).
    Str(&'a [u8]),
    /// A number or literal as written: `123`, `1.5e3`, `true`, `false`, `null`.
    Raw(&'a [u8]),
    /// An object or array starts here (its content is visited as deeper keys, if asked for).
    Container,
}

/// Receives the fields of interest. Key ids are chosen by the visitor; `0` means "ignore".
///
/// A *path* holds one id per nesting level: for an object level the id of its current key,
/// for an array level the id of the key whose value the array is. So in
/// `{"choices":[{"delta":{"content":"Hi"}}]}` the key `content` is asked with the path
/// `[CHOICES, CHOICES, DELTA]`, and its value is reported with `[CHOICES, CHOICES, DELTA, CONTENT]`.
pub trait Visitor {
    /// Id of `key`, a key of an object at depth `path.len() + 1` (depth 1 = a top-level
    /// object's own keys). Asked down to depth [`MAX_PATH`].
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8;
    /// A value of an object member whose key id is not 0; `path` ends with that id.
    fn value(&mut self, path: &[u8], value: Value<'_>);
    /// A top-level object was opened.
    fn start_object(&mut self) {}
    /// A top-level object was closed: its fields are complete.
    fn end_object(&mut self) {}
    /// A top-level object was abandoned because the input was not valid JSON.
    fn abort_object(&mut self) {}
    /// Whether the visitor has all it needs; the scanner then stops reading.
    fn satisfied(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between top-level values: skip to the next `{`.
    Top,
    /// In an object, expecting a key or `}` (after `{` or `,`).
    Key,
    /// Inside a key string.
    InKey,
    /// After a key, expecting `:`.
    Colon,
    /// Expecting a value.
    Value,
    /// Inside a string value.
    InStr,
    /// Inside a number or literal.
    InRaw,
    /// After a value, expecting `,` or the container's end.
    After,
}

/// The scanner state; see the module doc.
pub struct JsonScan {
    state: State,
    /// Nesting depth: 0 at top level, 1 inside a top-level object.
    depth: u32,
    /// Bit `d` set when the container at depth `d + 1` is an object (else an array).
    objects: u64,
    /// The previous byte of a string was a backslash.
    escaped: bool,
    /// Key ids of the levels down to [`MAX_PATH`] (see [`Visitor`]).
    path: [u8; MAX_PATH],
    /// Whether the current string or raw value is captured for the visitor.
    capture: bool,
    buf: [u8; CAP],
    len: usize,
    truncated: bool,
    /// Whether the scanner has ever abandoned an object (invalid input seen).
    pub invalid: bool,
}

// === impl JsonScan ===

impl Default for JsonScan {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonScan {
    pub fn new() -> Self {
        JsonScan {
            state: State::Top,
            depth: 0,
            objects: 0,
            escaped: false,
            path: [0; MAX_PATH],
            capture: false,
            buf: [0; CAP],
            len: 0,
            truncated: false,
            invalid: false,
        }
    }

    /// Whether the scanner is between top-level values (no object half read).
    pub fn at_top(&self) -> bool {
        self.state == State::Top
    }

    /// Scans `bytes`, reporting to `v`. Stops early once `v.satisfied()`.
    pub fn feed<V: Visitor>(&mut self, bytes: &[u8], v: &mut V) {
        let mut i = 0;
        while i < bytes.len() {
            if v.satisfied() {
                return;
            }
            let b = bytes[i];
            match self.state {
                State::Top => {
                    // Fast skip to the next object.
                    match memchr::memchr(b'{', &bytes[i..]) {
                        Some(off) => {
                            i += off;
                            self.open(true);
                            v.start_object();
                        }
                        None => return,
                    }
                }
                State::InStr | State::InKey => {
                    if self.escaped {
                        self.escaped = false;
                        self.keep(b);
                        i += 1;
                        continue;
                    }
                    // Jump over plain string content.
                    let rest = &bytes[i..];
                    let off = memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                    let plain = &rest[..off];
                    if memchr::memchr(b'\n', plain).is_some() {
                        self.reset(v);
                        // Re-scan from the newline's position at top level.
                        i += memchr::memchr(b'\n', plain).unwrap_or(0);
                        continue;
                    }
                    if self.capture {
                        self.keep_slice(plain);
                    }
                    i += off;
                    if i >= bytes.len() {
                        return;
                    }
                    if bytes[i] == b'\\' {
                        self.escaped = true;
                        self.keep(b'\\');
                    } else {
                        self.end_string(v);
                    }
                }
                State::InRaw => {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        if self.capture {
                            v.value(self.value_path(), Value::Raw(&self.buf[..self.len]));
                        }
                        self.state = State::After;
                        continue; // the delimiter is handled by `After`
                    }
                    self.keep(b);
                }
                _ if is_ws(b) => {}
                State::Key => match b {
                    b'"' => self.begin(State::InKey, true),
                    b'}' => self.close(v),
                    _ => self.invalid_byte(v),
                },
                State::Colon => match b {
                    b':' => self.state = State::Value,
                    _ => self.invalid_byte(v),
                },
                State::Value => match b {
                    b'"' => {
                        let c = self.wanted();
                        self.begin(State::InStr, c);
                    }
                    b'{' | b'[' => {
                        if self.wanted() {
                            v.value(self.value_path(), Value::Container);
                        }
                        if self.depth >= MAX_DEPTH {
                            self.invalid_byte(v);
                        } else {
                            self.open(b == b'{');
                        }
                    }
                    b']' if !self.in_object() => self.close(v),
                    b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                        let c = self.wanted();
                        self.begin(State::InRaw, c);
                        self.keep(b);
                    }
                    _ => self.invalid_byte(v),
                },
                State::After => match b {
                    b',' => {
                        self.state = if self.in_object() {
                            State::Key
                        } else {
                            State::Value
                        };
                    }
                    b'}' if self.in_object() => self.close(v),
                    b']' if !self.in_object() => self.close(v),
                    _ => self.invalid_byte(v),
                },
            }
            i += 1;
        }
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.objects & (1 << (self.depth - 1)) != 0
    }

    /// The path of the member value being read (ends with its key's id).
    fn value_path(&self) -> &[u8] {
        &self.path[..self.depth as usize]
    }

    /// Whether the value about to be read belongs to a key the visitor asked for.
    fn wanted(&self) -> bool {
        let d = self.depth as usize;
        self.in_object() && (1..=MAX_PATH).contains(&d) && self.path[d - 1] != 0
    }

    fn open(&mut self, object: bool) {
        self.depth += 1;
        let bit = 1u64 << (self.depth - 1);
        let d = self.depth as usize;
        if object {
            self.objects |= bit;
            self.state = State::Key;
        } else {
            self.objects &= !bit;
            self.state = State::Value;
        }
        if d <= MAX_PATH {
            // An array level carries the id of the key it is the value of.
            self.path[d - 1] = if object || d < 2 { 0 } else { self.path[d - 2] };
        }
    }

    fn close<V: Visitor>(&mut self, v: &mut V) {
        self.depth -= 1;
        if self.depth == 0 {
            self.state = State::Top;
            v.end_object();
        } else {
            self.state = State::After;
        }
    }

    fn begin(&mut self, state: State, capture: bool) {
        self.state = state;
        self.capture = capture;
        self.len = 0;
        self.truncated = false;
    }

    fn keep(&mut self, b: u8) {
        if self.capture {
            if self.len < CAP {
                self.buf[self.len] = b;
                self.len += 1;
            } else {
                self.truncated = true;
            }
        }
    }

    fn keep_slice(&mut self, s: &[u8]) {
        let room = CAP - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self.truncated |= n < s.len();
    }

    fn end_string<V: Visitor>(&mut self, v: &mut V) {
        if self.state == State::InKey {
            let d = self.depth as usize;
            if d <= MAX_PATH {
                self.path[d - 1] = if self.truncated {
                    0
                } else {
                    v.key_id(&self.path[..d - 1], &self.buf[..self.len])
                };
            }
            self.state = State::Colon;
        } else {
            if self.capture {
                v.value(self.value_path(), Value::Str(&self.buf[..self.len]));
            }
            self.state = State::After;
        }
    }

    fn invalid_byte<V: Visitor>(&mut self, v: &mut V) {
        self.reset(v);
    }

    /// Abandons the current object and returns to top level.
    fn reset<V: Visitor>(&mut self, v: &mut V) {
        if self.depth > 0 {
            v.abort_object();
        }
        self.invalid = true;
        self.state = State::Top;
        self.depth = 0;
        self.escaped = false;
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every event as text, for exact assertions.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Visitor for Log {
        fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
            match (path, key) {
                ([], b"model") => 1,
                ([], b"done") => 2,
                ([], b"eval_count") => 3,
                ([], b"message") => 4,
                ([4], b"content") => 5,
                ([], b"usage") => 6,
                ([6], b"prompt_tokens") => 7,
                ([], b"choices") => 8,
                ([8, 8], b"delta") => 9,
                ([8, 8, 9], b"content") => 10,
                _ => 0,
            }
        }
        fn value(&mut self, path: &[u8], value: Value<'_>) {
            let v = match value {
                Value::Str(s) => format!("s:{}", String::from_utf8_lossy(s)),
                Value::Raw(s) => format!("r:{}", String::from_utf8_lossy(s)),
                Value::Container => "c".to_string(),
            };
            let p: Vec<String> = path.iter().map(u8::to_string).collect();
            self.0.push(format!("{}={v}", p.join(".")));
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

    fn scan_chunks(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = JsonScan::new();
        let mut log = Log::default();
        for c in chunks {
            s.feed(c, &mut log);
        }
        log.0
    }

    const CHAT: &[u8] = br#"{"model":"llama3.2","created_at":"2023-12-12T14:13:43Z","message":{"role":"assistant","content":"Hi \"there\"\n","images":null},"done":true,"done_reason":"stop","eval_count":298,"context":[1,{"model":"x"},[3]]}"#;

    fn chat_events() -> Vec<String> {
        vec![
            "{",
            "1=s:llama3.2",
            "4=c",
            "4.5=s:Hi \\\"there\\\"\\n",
            "2=r:true",
            "3=r:298",
            "}",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    #[test]
    fn reports_top_level_and_second_level_fields() {
        assert_eq!(scan_chunks(&[CHAT]), chat_events());
    }

    #[test]
    fn same_events_at_every_split_point() {
        for at in 0..=CHAT.len() {
            let (a, b) = CHAT.split_at(at);
            assert_eq!(scan_chunks(&[a, b]), chat_events(), "split at {at}");
        }
    }

    #[test]
    fn same_events_byte_by_byte() {
        let chunks: Vec<&[u8]> = CHAT.chunks(1).collect();
        assert_eq!(scan_chunks(&chunks), chat_events());
    }

    #[test]
    fn several_objects_in_one_chunk_with_crlf_and_spaces() {
        let ev = scan_chunks(&[b"{\"done\":false}\r\n{ \"done\" : true , \"eval_count\": 7 }\r\n"]);
        assert_eq!(ev, ["{", "2=r:false", "}", "{", "2=r:true", "3=r:7", "}"]);
    }

    #[test]
    fn pretty_printed_request_body() {
        let ev = scan_chunks(&[
            b"{\n  \"messages\": [{\"role\":\"user\"}],\n  \"model\": \"qwen2.5:0.5b\"\n}\n",
        ]);
        assert_eq!(ev, ["{", "1=s:qwen2.5:0.5b", "}"]);
    }

    #[test]
    fn nested_keys_with_the_same_name_are_not_top_level() {
        let ev = scan_chunks(&[br#"{"tool_calls":[{"function":{"arguments":{"done":true,"model":"no"}}}],"done":false}"#]);
        assert_eq!(ev, ["{", "2=r:false", "}"]);
    }

    #[test]
    fn second_level_only_under_a_wanted_parent() {
        let ev = scan_chunks(&[br#"{"other":{"content":"x"},"usage":{"prompt_tokens":5}}"#]);
        assert_eq!(ev, ["{", "6=c", "6.7=r:5", "}"]);
    }

    #[test]
    fn keys_inside_arrays_of_objects_have_the_array_in_their_path() {
        let ev = scan_chunks(&[br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}},{"delta":{"content":"lo"}}],"content":"top"}"#]);
        assert_eq!(
            ev,
            [
                "{",
                "8=c",
                "8.8.9=c",
                "8.8.9.10=s:Hel",
                "8.8.9=c",
                "8.8.9.10=s:lo",
                "}"
            ]
        );
    }

    #[test]
    fn garbage_line_resynchronises_at_next_object() {
        let ev = scan_chunks(&[b"<html>oops</html>\n{\"done\":tru", b"e}\n"]);
        assert_eq!(ev, ["{", "2=r:true", "}"]);
        let ev = scan_chunks(&[b"{\"model\":\"a\",\"x\":\"unterminated\n{\"done\":true}\n"]);
        assert_eq!(ev, ["{", "1=s:a", "abort", "{", "2=r:true", "}"]);
        let ev = scan_chunks(&[b"{\"model\" 5}{\"done\":true}"]);
        assert_eq!(ev, ["{", "abort", "{", "2=r:true", "}"]);
    }

    #[test]
    fn long_values_are_truncated_not_buffered() {
        let long = "a".repeat(10 * CAP);
        let body = format!("{{\"model\":\"{long}\",\"done\":true}}");
        let ev = scan_chunks(&[body.as_bytes()]);
        assert_eq!(ev[1], format!("1=s:{}", &long[..CAP]));
        assert_eq!(ev[2], "2=r:true");
    }

    #[test]
    fn huge_uninteresting_string_is_skipped() {
        let big = "x".repeat(1 << 20);
        let body = format!("{{\"response\":\"{big}\",\"eval_count\":3}}");
        let mut s = JsonScan::new();
        let mut log = Log::default();
        for c in body.as_bytes().chunks(4096) {
            s.feed(c, &mut log);
        }
        assert_eq!(log.0, ["{", "3=r:3", "}"]);
    }

    #[test]
    fn too_deep_nesting_is_invalid_not_a_panic() {
        let body = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        let mut s = JsonScan::new();
        let mut log = Log::default();
        s.feed(body.as_bytes(), &mut log);
        assert!(s.invalid);
        assert_eq!(log.0[0], "{");
        assert_eq!(log.0[1], "abort");
    }
}
