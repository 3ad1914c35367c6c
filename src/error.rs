//! Errors that cross stage boundaries: the proxy produces them on the bodies it forwards,
//! the tap tells them apart to pick a request's outcome. A leaf (it imports nothing from the
//! crate), so that the tap can name them without depending on the proxy.

use std::time::Duration;

/// Error type of the proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The backend sent nothing for the configured `timeout`.
///
/// Raised by the proxy's idle timeout on an answer body; the tap records such an answer as
/// `outcome="timeout"` rather than `stream_error`.
#[derive(Debug, thiserror::Error)]
#[error("ollama-tap: the backend sent nothing for {0:?}")]
pub(crate) struct IdleTimeout(pub(crate) Duration);
