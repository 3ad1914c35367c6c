//! Finds the top-level `"model"` of an inference request body, reading as little as it can:
//! a pure function over bytes split anywhere, which stops at the model's closing quote.

use super::json_scan::{JsonScan, Value, Visitor};

/// Longest model name kept (longer ones are cut here, [`super::json_scan::CAP`] bounds it too).
const MODEL_CAP: usize = 200;

/// At most this much of a zstd-compressed body is decompressed to find its `model`.
const ZSTD_LIMIT: usize = 1 << 20;
/// Largest zstd window accepted (a hostile frame cannot make the agent allocate more).
const ZSTD_WINDOW: u64 = 8 << 20;

/// Incremental reader of a request body's `model`.
#[derive(Default)]
pub struct ModelSniffer {
    scan: JsonScan,
    found: Found,
}

#[derive(Default)]
struct Found {
    model: Option<String>,
    /// The first top-level object ended (or was abandoned) without a string `model`.
    gave_up: bool,
}

// === impl ModelSniffer ===

impl ModelSniffer {
    pub fn new() -> Self {
        Self::default()
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
    pub fn model(&self) -> Option<&str> {
        self.found.model.as_deref()
    }

    pub fn into_model(self) -> Option<String> {
        self.found.model
    }
}

/// The `model` of a zstd-compressed body (`Content-Encoding: zstd`, which Ollama accepts on
/// `/v1/*`), from `compressed`, which may be only the start of the body.
pub fn model_from_zstd(compressed: &[u8]) -> Option<String> {
    use std::io::Read;
    let mut decoder =
        ruzstd::decoding::StreamingDecoder::new_with_max_window_size(compressed, ZSTD_WINDOW)
            .ok()?;
    let mut sniffer = ModelSniffer::new();
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
    sniffer.into_model()
}

impl Visitor for Found {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        u8::from(path.is_empty() && key == b"model")
    }

    fn value(&mut self, _path: &[u8], value: Value<'_>) {
        if let Value::Str(s) = value {
            let s = &s[..s.len().min(MODEL_CAP)];
            // `"hf.co\/org\/m"` (PHP's default) is the same model as `"hf.co/org/m"`: decode
            // escapes when there are any; keep the raw text if they do not decode.
            let decoded = s
                .contains(&b'\\')
                .then(|| serde_json::from_slice::<String>(&[&b"\""[..], s, b"\""].concat()).ok())
                .flatten();
            self.model = Some(decoded.unwrap_or_else(|| String::from_utf8_lossy(s).into_owned()));
        } else {
            self.gave_up = true;
        }
    }

    fn end_object(&mut self) {
        self.gave_up = true;
    }

    fn abort_object(&mut self) {
        self.gave_up = true;
    }

    fn satisfied(&self) -> bool {
        self.model.is_some() || self.gave_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(chunks: &[&[u8]]) -> Option<String> {
        let mut s = ModelSniffer::new();
        for c in chunks {
            s.feed(c);
        }
        s.into_model()
    }

    #[test]
    fn model_first_or_last_pretty_or_compact() {
        assert_eq!(
            sniff(&[br#"{"model":"llama3.2","prompt":"hi"}"#]).as_deref(),
            Some("llama3.2")
        );
        let openai = br#"{"messages":[{"role":"user","content":"model: \"no\""}],"model":"qwen2.5:0.5b","stream":true}"#;
        assert_eq!(sniff(&[openai]).as_deref(), Some("qwen2.5:0.5b"));
        let curl = b"{\n  \"model\": \"qwen2.5:0.5b\",\n  \"prompt\": \"Why is the sky blue?\"\n}";
        assert_eq!(sniff(&[curl]).as_deref(), Some("qwen2.5:0.5b"));
    }

    #[test]
    fn model_split_at_every_position() {
        let body = br#"{"messages":[{"content":"x"}],"model":"hf.co/org/repo-GGUF:Q4_K_M"}"#;
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(
                sniff(&[a, b]).as_deref(),
                Some("hf.co/org/repo-GGUF:Q4_K_M"),
                "split at {at}"
            );
        }
    }

    #[test]
    fn escaped_names_decode_to_one_model() {
        assert_eq!(
            sniff(&[br#"{"model":"hf.co\/org\/repo"}"#]).as_deref(),
            Some("hf.co/org/repo")
        );
        assert_eq!(
            sniff(&[br#"{"model":"q\u0077en"}"#]).as_deref(),
            Some("qwen")
        );
        assert_eq!(sniff(&[br#"{"model":"bad\x"}"#]).as_deref(), Some("bad\\x"));
    }

    #[test]
    fn stops_reading_once_found() {
        let mut s = ModelSniffer::new();
        s.feed(br#"{"model":"m","prompt":""#);
        assert!(s.finished());
        assert_eq!(s.model(), Some("m"));
    }

    #[test]
    fn bad_bodies_give_no_model_and_finish() {
        for body in [
            &b"not json at all"[..],
            br#"{"prompt":"no model here"}"#,
            br#"{"model":42}"#,
            br#"{"model":null,"prompt":"x"}"#,
            br#"{"model" "x"}"#,
        ] {
            let mut s = ModelSniffer::new();
            s.feed(body);
            assert_eq!(s.model(), None, "{}", String::from_utf8_lossy(body));
        }
        let mut s = ModelSniffer::new();
        s.feed(br#"{"model":42}"#);
        assert!(s.finished());
    }

    #[test]
    fn model_from_a_zstd_body_even_cut_short() {
        let body = br#"{"messages":[{"role":"user","content":"hello there"}],"model":"llama3.2","stream":true}"#;
        let z = ruzstd::encoding::compress_to_vec(
            &body[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(model_from_zstd(&z).as_deref(), Some("llama3.2"));
        assert_eq!(model_from_zstd(b"not zstd"), None);
        // A body of several zstd blocks, cut after the first: the start still decodes.
        let mut seed = 7u32;
        let noise: String = (0..600_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                char::from(b'a' + (seed >> 16) as u8 % 26)
            })
            .collect();
        let long = format!(r#"{{"model":"m1","prompt":"{noise}"}}"#);
        let z = ruzstd::encoding::compress_to_vec(
            long.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            model_from_zstd(&z[..z.len() * 3 / 4]).as_deref(),
            Some("m1")
        );
    }

    #[test]
    fn body_that_stops_half_way() {
        assert_eq!(sniff(&[br#"{"prompt":"abc"#]), None);
        assert_eq!(sniff(&[br#"{"model":"ab"#]), None);
    }
}
