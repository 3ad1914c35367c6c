//! Finds the top-level `"model"` of an inference request body, and on request its top-level
//! `"user"` (OpenAI's end-user field, for `client_from_body`), reading as little as it can: a
//! pure function over bytes split anywhere, which stops at the closing quote of the last field
//! it looks for (or at the end of the object).

use super::json_scan::{JsonScan, Value, Visitor};

/// Longest model name kept (longer ones are cut here, [`super::json_scan::CAP`] bounds it too).
const MODEL_CAP: usize = 200;

/// At most this much of a zstd-compressed body is decompressed to find its `model`.
const ZSTD_LIMIT: usize = 1 << 20;
/// Largest zstd window accepted (a hostile frame cannot make the agent allocate more).
const ZSTD_WINDOW: u64 = 8 << 20;

/// Key ids of the two top-level fields read (see [`Visitor::key_id`]).
const MODEL: u8 = 1;
const USER: u8 = 2;

/// Incremental reader of a request body's `model` (and, when asked, its `user`).
#[derive(Default)]
pub struct ModelSniffer {
    scan: JsonScan,
    found: Found,
}

#[derive(Default)]
struct Found {
    model: Option<String>,
    /// A `model` member was read (a string or not): later ones change nothing.
    model_read: bool,
    /// `user` is looked for too; without it the sniffer never waits for one.
    want_user: bool,
    user: Option<String>,
    /// A `user` member was read (a string or not).
    user_read: bool,
    /// The first top-level object ended (or was abandoned): nothing more will be found.
    ended: bool,
}

// === impl ModelSniffer ===

impl ModelSniffer {
    /// A sniffer of the `model` only: it is finished at the model's closing quote.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sniffer of the `model` and the `user`: it is finished once both were read or the
    /// object ended.
    pub fn with_user() -> Self {
        let mut s = Self::default();
        s.found.want_user = true;
        s
    }

    /// Reads the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.scan.feed(chunk, &mut self.found);
    }

    /// Whether more bytes cannot change the answer.
    pub fn finished(&self) -> bool {
        self.found.satisfied()
    }

    /// The model, once found.
    #[cfg(test)]
    pub(crate) fn model(&self) -> Option<&str> {
        self.found.model.as_deref()
    }

    /// The user, once found (only by a sniffer [`ModelSniffer::with_user`]), escapes decoded,
    /// at most [`super::json_scan::CAP`] bytes of the body.
    #[cfg(test)]
    pub(crate) fn user(&self) -> Option<&str> {
        self.found.user.as_deref()
    }

    pub fn into_model(self) -> Option<String> {
        self.found.model
    }

    /// The model and the user.
    pub fn into_found(self) -> (Option<String>, Option<String>) {
        (self.found.model, self.found.user)
    }
}

/// The `model` of a zstd-compressed body (`Content-Encoding: zstd`, which Ollama accepts on
/// `/v1/*`), from `compressed`, which may be only the start of the body.
pub fn model_from_zstd(compressed: &[u8]) -> Option<String> {
    sniff_zstd(compressed, ModelSniffer::new()).into_model()
}

/// Feeds the decompressed start of a zstd body (at most 1 MiB of it) to `sniffer`.
pub(crate) fn sniff_zstd(compressed: &[u8], mut sniffer: ModelSniffer) -> ModelSniffer {
    use std::io::Read;
    let Ok(mut decoder) =
        ruzstd::decoding::StreamingDecoder::new_with_max_window_size(compressed, ZSTD_WINDOW)
    else {
        return sniffer;
    };
    let mut buf = [0u8; 8192];
    let mut total = 0;
    while !sniffer.finished() && total < ZSTD_LIMIT {
        match decoder.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sniffer.feed(&buf[..n]);
                total += n;
            }
        }
    }
    sniffer
}

/// A JSON string's content as text: escapes decoded when there are any (`"hf.co\/org\/m"`,
/// PHP's default, is `"hf.co/org/m"`); the raw text if they do not decode.
fn json_text(s: &[u8]) -> String {
    let decoded = s
        .contains(&b'\\')
        .then(|| serde_json::from_slice::<String>(&[&b"\""[..], s, b"\""].concat()).ok())
        .flatten();
    decoded.unwrap_or_else(|| String::from_utf8_lossy(s).into_owned())
}

impl Visitor for Found {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        match key {
            _ if !path.is_empty() => 0,
            b"model" if !self.model_read => MODEL,
            b"user" if self.want_user && !self.user_read => USER,
            _ => 0,
        }
    }

    fn value(&mut self, path: &[u8], value: Value<'_>) {
        let text = match value {
            Value::Str(s) => Some(s),
            Value::Raw(_) | Value::Container => None,
        };
        match path.last() {
            Some(&MODEL) => {
                self.model_read = true;
                self.model = text.map(|s| json_text(&s[..s.len().min(MODEL_CAP)]));
            }
            Some(&USER) => {
                self.user_read = true;
                self.user = text.map(json_text);
            }
            _ => {}
        }
    }

    fn end_object(&mut self) {
        self.ended = true;
    }

    fn abort_object(&mut self) {
        self.ended = true;
    }

    fn satisfied(&self) -> bool {
        self.ended || (self.model_read && (self.user_read || !self.want_user))
    }
}

#[cfg(test)]
mod tests;
