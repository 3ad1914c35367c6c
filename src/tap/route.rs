//! Which requests are metered, and how their answers are read: method + path → [`Endpoint`].

use axum::http::Method;

/// A metered Ollama endpoint, or `None` for plain pass-through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/generate`
    Generate,
    /// `POST /api/chat`
    Chat,
}

// === impl Endpoint ===

impl Endpoint {
    /// Classifies a request. Only exact paths are metered; anything else passes through.
    pub fn classify(method: &Method, path: &str) -> Option<Endpoint> {
        if method != Method::POST {
            return None;
        }
        match path {
            "/api/generate" => Some(Endpoint::Generate),
            "/api/chat" => Some(Endpoint::Chat),
            _ => None,
        }
    }

    /// The label value used for this endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Generate => "/api/generate",
            Endpoint::Chat => "/api/chat",
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
            Endpoint::classify(&Method::POST, "/api/generate"),
            Some(Endpoint::Generate)
        );
        assert_eq!(Endpoint::classify(&Method::GET, "/api/chat"), None);
        assert_eq!(Endpoint::classify(&Method::POST, "/api/pull"), None);
        assert_eq!(Endpoint::classify(&Method::POST, "/api/chat/"), None);
    }
}
