//! The shared vocabulary of the data path: what a metered request is ([`Endpoint`]), how it
//! ended ([`Outcome`]), what its answer said ([`Usage`], [`FinishReason`]), and the finished
//! request as the store accounts it ([`Record`]).
//!
//! A leaf: it imports nothing from the crate, so every stage (proxy, tap, store, exposition,
//! push) may import it without the stages importing each other backwards.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::Method;

/// Label used when neither the request nor the answer named a model.
pub(crate) const UNKNOWN_MODEL: &str = "unknown";
/// The label of requests whose model gets no label of its own: past the cap, a name the
/// backend answered 404 for, or a first request still in flight.
pub(crate) const OTHER_MODEL: &str = "other";
/// With client attribution on: the `client` label of requests that named no client.
pub(crate) const UNKNOWN_CLIENT: &str = "unknown";
/// With client attribution on: the `client` label of new clients past `max_clients`.
pub(crate) const OTHER_CLIENT: &str = "other";

/// One finished metered request, as the tap saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) model: &'a str,
    pub(crate) endpoint: Endpoint,
    /// How it ended: the `outcome` label of `ollama_endpoint_requests_total`; a 2xx answer
    /// ended cleanly is the original plugin's success, anything else its failure.
    pub(crate) outcome: Outcome,
    /// Empty prompt / done_reason load|unload: counted as a request, kept out of token and
    /// latency figures (except `ollama_load_duration_seconds`).
    pub(crate) load_only: bool,
    pub(crate) usage: Usage,
    pub(crate) finish_reason: Option<FinishReason>,
    /// Measured by the agent: arrival → last byte.
    pub(crate) duration: Duration,
    /// Arrival → first chunk carrying content, thinking or tool calls; `Some` only for
    /// successful streams (ignored on failed or load-only records).
    pub(crate) ttft: Option<Duration>,
    /// The client the request named, as a bounded, safe label (see `proxy/client.rs`); `None`
    /// when it named none or client attribution is off.
    pub(crate) client: Option<&'a str>,
}

/// A metered Ollama endpoint. Anything else is passed through unmetered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/generate`
    Generate,
    /// `POST /api/chat`
    Chat,
    /// `POST /api/embed`
    Embed,
    /// `POST /api/embeddings` (legacy: no stats in the answer)
    Embeddings,
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/completions`
    OpenAiCompletions,
    /// `POST /v1/embeddings`
    OpenAiEmbeddings,
    /// `POST /v1/responses`
    OpenAiResponses,
    /// `POST /v1/messages` (Anthropic)
    AnthropicMessages,
}

/// Which of Ollama's APIs an endpoint belongs to, which decides how its answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiFamily {
    /// Ollama's own `/api/*`: NDJSON or one JSON object with nanosecond stats.
    Native,
    /// Ollama's OpenAI and Anthropic compatibility, `/v1/*`: SSE or one JSON object with a
    /// `usage` block.
    Compat,
}

/// How a metered request ended: the `outcome` label, and (through [`Outcome::is_success`])
/// the original plugin's success/failed counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The backend answered with this HTTP status and the answer ended cleanly.
    Http(u16),
    /// The answer started but broke off or carried an error.
    StreamError,
    /// The client went away before the answer ended.
    ClientAborted,
    /// The backend could not be reached.
    BackendUnreachable,
    /// The backend did not answer, or stopped sending, in time.
    Timeout,
}

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

// === impl Usage ===

impl Usage {
    /// The time the request spent inside Ollama that is neither loading, prompt evaluation nor
    /// generation: `total_duration − load_duration − prompt_eval_duration − eval_duration`,
    /// clamped at 0, when all four are reported (native generate and chat). Ollama takes
    /// `load_duration` up to the moment the scheduler hands the request a runner, and the
    /// runner's `Completion` then waits for one of its `OLLAMA_NUM_PARALLEL` slots before it
    /// evaluates the prompt; so this is that slot wait, plus prompt templating and tokenizing
    /// (small next to a slot wait; the fake Ollama puts 1 ms there).
    pub(crate) fn queue_wait_ns(&self) -> Option<u64> {
        let busy = self
            .load_duration_ns?
            .saturating_add(self.prompt_eval_duration_ns?)
            .saturating_add(self.eval_duration_ns?);
        Some(self.total_duration_ns?.saturating_sub(busy))
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// Every endpoint, in [`Endpoint::index`] order.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Generate,
        Endpoint::Chat,
        Endpoint::Embed,
        Endpoint::Embeddings,
        Endpoint::OpenAiChat,
        Endpoint::OpenAiCompletions,
        Endpoint::OpenAiEmbeddings,
        Endpoint::OpenAiResponses,
        Endpoint::AnthropicMessages,
    ];

    /// Classifies a request. Only exact paths are metered; anything else passes through.
    pub(crate) fn classify(method: &Method, path: &str) -> Option<Endpoint> {
        if method != Method::POST {
            return None;
        }
        Some(match path {
            "/api/generate" => Endpoint::Generate,
            "/api/chat" => Endpoint::Chat,
            "/api/embed" => Endpoint::Embed,
            "/api/embeddings" => Endpoint::Embeddings,
            "/v1/chat/completions" => Endpoint::OpenAiChat,
            "/v1/completions" => Endpoint::OpenAiCompletions,
            "/v1/embeddings" => Endpoint::OpenAiEmbeddings,
            "/v1/responses" => Endpoint::OpenAiResponses,
            "/v1/messages" => Endpoint::AnthropicMessages,
            _ => return None,
        })
    }

    /// Position in [`Endpoint::ALL`], for per-endpoint arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The `endpoint` label value: the path.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Generate => "/api/generate",
            Endpoint::Chat => "/api/chat",
            Endpoint::Embed => "/api/embed",
            Endpoint::Embeddings => "/api/embeddings",
            Endpoint::OpenAiChat => "/v1/chat/completions",
            Endpoint::OpenAiCompletions => "/v1/completions",
            Endpoint::OpenAiEmbeddings => "/v1/embeddings",
            Endpoint::OpenAiResponses => "/v1/responses",
            Endpoint::AnthropicMessages => "/v1/messages",
        }
    }

    /// The API the endpoint belongs to.
    pub(crate) fn api_family(self) -> ApiFamily {
        match self {
            Endpoint::Generate | Endpoint::Chat | Endpoint::Embed | Endpoint::Embeddings => {
                ApiFamily::Native
            }
            _ => ApiFamily::Compat,
        }
    }

    /// Whether answers carry generated tokens (not an embedding endpoint).
    /// OpenTelemetry's `gen_ai.operation.name` of the endpoint: `chat` (chat, OpenAI chat
    /// and responses, Anthropic messages), `text_completion` (generate, OpenAI completions)
    /// or `embeddings`.
    pub(crate) fn otel_operation(self) -> &'static str {
        match self {
            Endpoint::Chat
            | Endpoint::OpenAiChat
            | Endpoint::OpenAiResponses
            | Endpoint::AnthropicMessages => "chat",
            Endpoint::Generate | Endpoint::OpenAiCompletions => "text_completion",
            Endpoint::Embed | Endpoint::Embeddings | Endpoint::OpenAiEmbeddings => "embeddings",
        }
    }

    pub(crate) fn generates(self) -> bool {
        !matches!(
            self,
            Endpoint::Embed | Endpoint::Embeddings | Endpoint::OpenAiEmbeddings
        )
    }
}

// === impl Outcome ===

/// Keys of the non-HTTP outcomes in the outcome table (HTTP codes are `code + 1`).
const KEY_STREAM_ERROR: u32 = 0x1_0001;
const KEY_CLIENT_ABORTED: u32 = 0x1_0002;
const KEY_BACKEND_UNREACHABLE: u32 = 0x1_0003;
const KEY_TIMEOUT: u32 = 0x1_0004;

impl Outcome {
    /// A 2xx answer that ended cleanly: `ollama_requests_success`, and the only outcome whose
    /// tokens and latencies are measured.
    pub(crate) fn is_success(self) -> bool {
        matches!(self, Outcome::Http(c) if (200..300).contains(&c))
    }

    /// The `outcome` label value: `"200"`, `"404"`, `"stream_error"`, `"client_aborted"`,
    /// `"backend_unreachable"`, `"timeout"`. Common HTTP codes are static strings.
    pub(crate) fn label(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Outcome::StreamError => "stream_error",
            Outcome::ClientAborted => "client_aborted",
            Outcome::BackendUnreachable => "backend_unreachable",
            Outcome::Timeout => "timeout",
            Outcome::Http(200) => "200",
            Outcome::Http(400) => "400",
            Outcome::Http(404) => "404",
            Outcome::Http(500) => "500",
            Outcome::Http(502) => "502",
            Outcome::Http(503) => "503",
            Outcome::Http(code) => return Cow::Owned(code.to_string()),
        })
    }

    /// A non-zero key that orders HTTP codes first, ascending (the store's lock-free outcome
    /// table keeps outcomes as such keys).
    pub(crate) fn key(self) -> u32 {
        match self {
            Outcome::Http(code) => u32::from(code) + 1,
            Outcome::StreamError => KEY_STREAM_ERROR,
            Outcome::ClientAborted => KEY_CLIENT_ABORTED,
            Outcome::BackendUnreachable => KEY_BACKEND_UNREACHABLE,
            Outcome::Timeout => KEY_TIMEOUT,
        }
    }

    /// The outcome of an [`Outcome::key`].
    pub(crate) fn from_key(key: u32) -> Option<Outcome> {
        Some(match key {
            KEY_STREAM_ERROR => Outcome::StreamError,
            KEY_CLIENT_ABORTED => Outcome::ClientAborted,
            KEY_BACKEND_UNREACHABLE => Outcome::BackendUnreachable,
            KEY_TIMEOUT => Outcome::Timeout,
            k => Outcome::Http(u16::try_from(k.checked_sub(1)?).ok()?),
        })
    }
}

// === impl FinishReason ===

impl FinishReason {
    /// From the wire value of any dialect (`stop`, `end_turn`, `max_tokens`, `tool_use`, ...).
    pub(crate) fn parse(s: &[u8]) -> Self {
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
    pub(crate) fn as_str(self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inference_posts_are_metered() {
        assert_eq!(
            Endpoint::classify(&Method::POST, "/api/chat"),
            Some(Endpoint::Chat)
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/messages"),
            Some(Endpoint::AnthropicMessages)
        );
        assert_eq!(Endpoint::classify(&Method::GET, "/api/chat"), None);
        assert_eq!(Endpoint::classify(&Method::POST, "/api/pull"), None);
        assert_eq!(Endpoint::classify(&Method::POST, "/api/chat/"), None);
        assert_eq!(Endpoint::classify(&Method::GET, "/v1/models"), None);
    }

    #[test]
    fn index_matches_all() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(Endpoint::classify(&Method::POST, e.as_str()), Some(*e));
        }
    }

    #[test]
    fn finish_reasons_of_every_dialect() {
        assert_eq!(FinishReason::parse(b"end_turn"), FinishReason::Stop);
        assert_eq!(FinishReason::parse(b"max_tokens"), FinishReason::Length);
        assert_eq!(FinishReason::parse(b"tool_use"), FinishReason::ToolCalls);
        assert_eq!(FinishReason::parse(b"unload").as_str(), "unload");
        assert_eq!(FinishReason::parse(b"whatever"), FinishReason::Other);
    }

    #[test]
    fn outcome_keys_round_trip_and_label() {
        for s in [
            Outcome::Http(0),
            Outcome::Http(200),
            Outcome::Http(u16::MAX),
            Outcome::StreamError,
            Outcome::ClientAborted,
            Outcome::BackendUnreachable,
            Outcome::Timeout,
        ] {
            assert_ne!(s.key(), 0);
            assert_eq!(Outcome::from_key(s.key()), Some(s));
        }
        assert_eq!(Outcome::from_key(0), None);
        assert_eq!(Outcome::Http(200).label(), "200");
        assert_eq!(Outcome::Http(429).label(), "429");
        assert_eq!(Outcome::BackendUnreachable.label(), "backend_unreachable");
        assert_eq!(Outcome::ClientAborted.label(), "client_aborted");
        let successes: Vec<_> = [199, 200, 204, 299, 300, 404]
            .map(|c| Outcome::Http(c).is_success())
            .into();
        assert_eq!(successes, [false, true, true, true, false, false]);
        assert!(!Outcome::StreamError.is_success() && !Outcome::Timeout.is_success());
    }
}
