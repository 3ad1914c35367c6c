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
            i = match self.state {
                State::Top => match memchr::memchr(b'{', &bytes[i..]) {
                    // Fast skip to the next object.
                    Some(off) => {
                        self.open(true);
                        v.start_object();
                        i + off + 1
                    }
                    None => return,
                },
                State::InStr | State::InKey => match self.string(bytes, i, v) {
                    Some(next) => next,
                    None => return,
                },
                State::InRaw => self.raw(b, i, v),
                _ if is_ws(b) => i + 1,
                _ => {
                    self.structural(b, v);
                    i + 1
                }
            };
        }
    }

    /// Reads string content from `bytes[i..]` (a key or a string value): where the scan goes
    /// on, `None` when the chunk ends inside the string.
    #[inline(always)]
    fn string<V: Visitor>(&mut self, bytes: &[u8], i: usize, v: &mut V) -> Option<usize> {
        if self.escaped {
            self.escaped = false;
            self.keep(bytes[i]);
            return Some(i + 1);
        }
        // Jump over plain string content.
        let rest = &bytes[i..];
        let off = memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
        let plain = &rest[..off];
        if let Some(newline) = memchr::memchr(b'\n', plain) {
            self.reset(v);
            // Re-scan from the newline's position at top level.
            return Some(i + newline);
        }
        if self.capture {
            self.keep_slice(plain);
        }
        let end = i + off;
        match bytes.get(end)? {
            b'\\' => {
                self.escaped = true;
                self.keep(b'\\');
            }
            _ => self.end_string(v),
        }
        Some(end + 1)
    }

    /// One byte `b` (at `i`) of a number or literal: where the scan goes on. A delimiter ends
    /// the value and is read again, by `After`.
    #[inline(always)]
    fn raw<V: Visitor>(&mut self, b: u8, i: usize, v: &mut V) -> usize {
        if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
            if self.capture {
                v.value(self.value_path(), Value::Raw(&self.buf[..self.len]));
            }
            self.state = State::After;
            return i;
        }
        self.keep(b);
        i + 1
    }

    /// One structural byte (not white space) between strings and raw values.
    #[inline(always)]
    fn structural<V: Visitor>(&mut self, b: u8, v: &mut V) {
        match self.state {
            State::Key => match b {
                b'"' => self.begin(State::InKey, true),
                b'}' => self.close(v),
                _ => self.invalid_byte(v),
            },
            State::Colon => match b {
                b':' => self.state = State::Value,
                _ => self.invalid_byte(v),
            },
            State::Value => self.value_start(b, v),
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
            // `feed` reads these itself.
            State::Top | State::InKey | State::InStr | State::InRaw => {}
        }
    }

    /// The first byte `b` of a value.
    #[inline(always)]
    fn value_start<V: Visitor>(&mut self, b: u8, v: &mut V) {
        match b {
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
mod tests;
