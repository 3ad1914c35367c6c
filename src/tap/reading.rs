//! What the tap learnt from one answer, whatever its dialect: the common output of the
//! native ([`super::ndjson`]) and OpenAI/Anthropic ([`super::openai`]) readers.

/// The backend's own figures. Every field may be absent (Ollama omits zeros; the OpenAI
/// dialects report tokens only, and streams only with `include_usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_eval_count`, `usage.prompt_tokens`, `usage.input_tokens`.
    pub prompt_tokens: Option<u64>,
    /// `eval_count`, `usage.completion_tokens`, `usage.output_tokens`.
    pub completion_tokens: Option<u64>,
    /// `prompt_eval_cached_count`, `usage.prompt_tokens_details.cached_tokens`,
    /// `usage.input_tokens_details.cached_tokens`, `usage.cache_read_input_tokens`.
    pub cached_prompt_tokens: Option<u64>,
    /// Native only, nanoseconds.
    pub total_duration_ns: Option<u64>,
    pub load_duration_ns: Option<u64>,
    pub prompt_eval_duration_ns: Option<u64>,
    pub eval_duration_ns: Option<u64>,
}

/// Why generation stopped: `done_reason`, `finish_reason`, `stop_reason`, a response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Load,
    Unload,
    Other,
}

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
    pub fn load_only(&self) -> bool {
        matches!(
            self.finish_reason,
            Some(FinishReason::Load | FinishReason::Unload)
        )
    }
}

// === impl FinishReason ===

impl FinishReason {
    /// From the wire value of any dialect (`stop`, `end_turn`, `max_tokens`, `tool_use`, ...).
    pub fn parse(s: &[u8]) -> Self {
        match s {
            b"stop" | b"end_turn" | b"stop_sequence" | b"completed" => FinishReason::Stop,
            b"length" | b"max_tokens" | b"max_output_tokens" => FinishReason::Length,
            b"tool_calls" | b"tool_use" | b"function_call" => FinishReason::ToolCalls,
            b"content_filter" | b"refusal" => FinishReason::ContentFilter,
            b"load" => FinishReason::Load,
            b"unload" => FinishReason::Unload,
            _ => FinishReason::Other,
        }
    }

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Load => "load",
            FinishReason::Unload => "unload",
            FinishReason::Other => "other",
        }
    }
}

/// A non-negative integer as JSON writes it; anything else (floats, negatives, overflow) is None.
pub fn parse_u64(raw: &[u8]) -> Option<u64> {
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
    fn finish_reasons_of_every_dialect() {
        assert_eq!(FinishReason::parse(b"end_turn"), FinishReason::Stop);
        assert_eq!(FinishReason::parse(b"max_tokens"), FinishReason::Length);
        assert_eq!(FinishReason::parse(b"tool_use"), FinishReason::ToolCalls);
        assert_eq!(FinishReason::parse(b"unload").as_str(), "unload");
        assert_eq!(FinishReason::parse(b"whatever"), FinishReason::Other);
    }

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
