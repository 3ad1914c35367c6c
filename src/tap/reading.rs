//! What the tap learnt from one answer, whatever its dialect: the common output of the
//! native ([`super::ndjson`]) and OpenAI/Anthropic ([`super::openai`]) readers.

use crate::vocab::{FinishReason, Usage};

/// What has been read of an answer so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The answer's end marker was seen: native `done: true`, SSE `data: [DONE]`,
    /// `response.completed`, Anthropic `message_stop`, or a whole non-streamed JSON object
    /// that is not an error.
    pub complete: bool,
    /// An error object was seen (an `{"error": ...}` line, an SSE error event, a failed response).
    pub error: bool,
    /// The model the answer named (first seen), the label's fallback.
    pub model: Option<String>,
    /// A chunk carrying content, thinking/reasoning or tool calls has been seen.
    pub content_seen: bool,
    pub usage: Usage,
    pub finish_reason: Option<FinishReason>,
}

// === impl Reading ===

impl Reading {
    /// A complete answer with no error.
    pub fn succeeded(&self) -> bool {
        self.complete && !self.error
    }

    /// The answer only loaded or unloaded the model (no generation happened).
    pub(crate) fn load_only(&self) -> bool {
        matches!(
            self.finish_reason,
            Some(FinishReason::Load | FinishReason::Unload)
        )
    }
}

/// A non-negative integer as JSON writes it; anything else (floats, negatives, overflow) is None.
pub(crate) fn parse_u64(raw: &[u8]) -> Option<u64> {
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
