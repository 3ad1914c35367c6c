//! The backend check: `GET /api/version` once per interval, feeding `ollama_up` and `/health`.

use parking_lot::RwLock;

use crate::app::InstanceState;

/// What the last check found.
#[derive(Default)]
pub struct BackendStatus {
    inner: RwLock<Checked>,
}

/// The last check's result.
#[derive(Default, Clone, Debug)]
pub struct Checked {
    /// A check has run at least once.
    pub checked: bool,
    pub up: bool,
    /// The backend's version, from its answer.
    pub version: Option<String>,
    /// Why the last check failed.
    pub error: Option<String>,
}

// === impl BackendStatus ===

impl BackendStatus {
    /// What the last check found.
    pub fn get(&self) -> Checked {
        self.inner.read().clone()
    }
}

/// Checks the backend once: updates the status and the store's `ollama_up`, and logs only when
/// the state changes (down → up, up → down), never on every check.
pub async fn check(state: &InstanceState) -> bool {
    let result = state.upstream.get("/api/version").await;
    let (up, version, error) = match result {
        Ok((status, body)) if status.is_success() => (true, parse_version(&body), None),
        Ok((status, _)) => (false, None, Some(format!("answered {status}"))),
        Err(e) => (false, None, Some(e)),
    };
    let was = {
        let mut c = state.backend.inner.write();
        let was = c.checked.then_some(c.up);
        *c = Checked {
            checked: true,
            up,
            version: version.clone(),
            error: error.clone(),
        };
        was
    };
    state.store.set_up(up);
    let url = &state.upstream.url;
    match (was, up) {
        (None | Some(false), true) => {
            tracing::info!(backend = %url, version = version.as_deref().unwrap_or("?"), "Ollama is up")
        }
        (None | Some(true), false) => {
            tracing::warn!(backend = %url, error = error.as_deref().unwrap_or("?"), "Ollama is down")
        }
        _ => {}
    }
    up
}

/// `{"version":"0.12.6"}` → `0.12.6`.
fn parse_version(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct V {
        version: String,
    }
    serde_json::from_slice::<V>(body).ok().map(|v| v.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_ollama_answer() {
        assert_eq!(
            parse_version(br#"{"version":"0.12.6"}"#).as_deref(),
            Some("0.12.6")
        );
        assert_eq!(parse_version(b"404 page not found"), None);
    }
}
