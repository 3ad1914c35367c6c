//! Which requests are metered, and how their answers are read: method + path → [`Endpoint`].

use axum::http::Method;

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
pub enum ApiFamily {
    /// Ollama's own `/api/*`: NDJSON or one JSON object with nanosecond stats.
    Native,
    /// Ollama's OpenAI and Anthropic compatibility, `/v1/*`: SSE or one JSON object with a
    /// `usage` block.
    Compat,
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
    pub fn classify(method: &Method, path: &str) -> Option<Endpoint> {
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
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `endpoint` label value: the path.
    pub fn as_str(self) -> &'static str {
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
    pub fn api_family(self) -> ApiFamily {
        match self {
            Endpoint::Generate | Endpoint::Chat | Endpoint::Embed | Endpoint::Embeddings => {
                ApiFamily::Native
            }
            _ => ApiFamily::Compat,
        }
    }

    /// Whether answers carry generated tokens (not an embedding endpoint).
    pub fn generates(self) -> bool {
        !matches!(
            self,
            Endpoint::Embed | Endpoint::Embeddings | Endpoint::OpenAiEmbeddings
        )
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
}
