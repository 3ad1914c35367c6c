//! Why a request got no answer from the backend, and the one table from that to the answer the
//! client gets (its status) and what the meter records (its outcome).

use axum::http::StatusCode;

use super::body::ClientBodyError;
use super::upstream::{SendError, Upstream};
use crate::vocab::Outcome;

/// The answer to a request whose body broke off (as the peek reads it, or on the way up).
pub(super) const BODY_BROKE_OFF: &str = "ollama-tap: the request body broke off";

/// Why no answer head came from the backend.
pub(super) enum NoAnswer {
    /// The client went away in the middle of its body: nothing is wrong with Ollama.
    BodyBrokeOff,
    /// Neither the answer nor the request body moved within `timeout` (pass-through requests
    /// only: inference answers are not bounded before their first byte).
    Stuck,
    /// The connect timeout, or the OS timing the connection out.
    TimedOut(SendError),
    /// Any other failure to reach Ollama (refused, reset, a broken answer head).
    Unreachable(SendError),
}

// === impl NoAnswer ===

impl NoAnswer {
    /// The table: the status the client gets and the outcome a metered request is recorded
    /// with. `None`: the client's own doing; the backend is not judged, and the meter records
    /// `client_aborted` when it drops.
    pub(super) fn status_and_outcome(&self) -> (StatusCode, Option<Outcome>) {
        match self {
            NoAnswer::BodyBrokeOff => (StatusCode::BAD_REQUEST, None),
            NoAnswer::Stuck | NoAnswer::TimedOut(_) => {
                (StatusCode::GATEWAY_TIMEOUT, Some(Outcome::Timeout))
            }
            NoAnswer::Unreachable(_) => {
                (StatusCode::BAD_GATEWAY, Some(Outcome::BackendUnreachable))
            }
        }
    }

    /// The error message of the answer.
    pub(super) fn message(&self, up: &Upstream) -> String {
        match self {
            NoAnswer::BodyBrokeOff => BODY_BROKE_OFF.to_owned(),
            NoAnswer::Stuck => format!(
                "ollama-tap: Ollama at {} did not answer within {:?}",
                up.url, up.timeout
            ),
            NoAnswer::TimedOut(e) | NoAnswer::Unreachable(e) => format!(
                "ollama-tap: cannot reach Ollama at {}: {}",
                up.url,
                describe(e)
            ),
        }
    }
}

impl From<SendError> for NoAnswer {
    fn from(e: SendError) -> Self {
        if client_body_failed(&e) {
            NoAnswer::BodyBrokeOff
        } else if is_timeout(&e) {
            NoAnswer::TimedOut(e)
        } else {
            NoAnswer::Unreachable(e)
        }
    }
}

/// An error and its sources, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |s| s.source())
}

/// The innermost cause of a send error, which names what went wrong (refused, timed out...).
pub(super) fn describe(e: &SendError) -> String {
    let cause = chain(e).last().map(ToString::to_string).unwrap_or_default();
    match e {
        SendError::Connect(_) => format!("connect: {cause}"),
        SendError::Http(_) => cause,
    }
}

/// Whether the upstream request failed because the client's own body failed (the client hung
/// up mid-upload).
fn client_body_failed(e: &SendError) -> bool {
    chain(e).any(|s| s.is::<ClientBodyError>())
}

/// Whether an I/O timeout is anywhere in the chain (the connect timeout, or the OS timing the
/// connection out).
fn is_timeout(e: &SendError) -> bool {
    chain(e).any(is_io_timeout)
}

fn is_io_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_chain_runs_from_the_outermost_error_to_the_innermost_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "inner");
        let e = Outer(timed_out);
        let texts: Vec<String> = chain(&e).map(ToString::to_string).collect();
        assert_eq!(texts, ["outer", "inner"]);
        assert!(chain(&e).any(is_io_timeout));
        assert!(!chain(&Outer(std::io::Error::other("refused"))).any(is_io_timeout));
    }
}
