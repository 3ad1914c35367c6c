//! The backend check, once per interval: `GET /api/version` (feeding `ollama_up`,
//! `ollama_backend_info` and `/health`) and `GET /api/ps` (the loaded models). These two GETs
//! are the only requests the agent sends Ollama on its own; `passive = true` turns both off.

use parking_lot::RwLock;

use crate::proxy::Upstream;
use crate::store::{LoadedModel, Store};

/// What the last check found.
#[derive(Default)]
pub(crate) struct BackendStatus {
    inner: RwLock<Checked>,
}

/// The last check's result.
#[derive(Default, Clone, Debug)]
pub(crate) struct Checked {
    /// A check has run at least once.
    pub(crate) checked: bool,
    pub(crate) up: bool,
    /// The backend's version, from its answer.
    pub(crate) version: Option<String>,
    /// Why the last check failed.
    pub(crate) error: Option<String>,
}

// === impl BackendStatus ===

impl BackendStatus {
    /// What the last check found.
    pub(crate) fn get(&self) -> Checked {
        self.inner.read().clone()
    }
}

/// Checks the backend once: updates the status and the store's `ollama_up`, and logs only when
/// the state changes (down → up, up → down), never on every check.
pub(crate) async fn check(upstream: &Upstream, store: &Store, status: &BackendStatus) -> bool {
    let result = upstream.get("/api/version").await;
    let (up, version, error) = match result {
        Ok((status, body)) if status.is_success() => (true, parse_version(&body), None),
        Ok((status, _)) => (false, None, Some(format!("answered {status}"))),
        Err(e) => (false, None, Some(e)),
    };
    let was = {
        let mut c = status.inner.write();
        let was = c.checked.then_some(c.up);
        *c = Checked {
            checked: true,
            up,
            version: version.clone(),
            error: error.clone(),
        };
        was
    };
    store.set_up(up);
    store.set_backend_version(version.as_deref());
    if up {
        if let Ok((status, body)) = upstream.get("/api/ps").await {
            if status.is_success() {
                if let Some(models) = parse_ps(&body) {
                    store.set_loaded_models(models);
                }
            }
        }
    } else {
        store.set_loaded_models(Vec::new());
    }
    let url = &upstream.url;
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

/// `/api/ps` → the loaded models (name, size, VRAM size, context length).
fn parse_ps(body: &[u8]) -> Option<Vec<LoadedModel>> {
    #[derive(serde::Deserialize)]
    struct Ps {
        #[serde(default)]
        models: Option<Vec<Running>>,
    }
    #[derive(serde::Deserialize)]
    struct Running {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        size: u64,
        #[serde(default)]
        size_vram: u64,
        #[serde(default)]
        context_length: Option<u64>,
    }
    let ps: Ps = serde_json::from_slice(body).ok()?;
    Some(
        ps.models
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| Some((m.name.or(m.model)?, m.size, m.size_vram, m.context_length)))
            .map(|(name, size, size_vram, context_length)| LoadedModel {
                name: crate::tap::model_label::normalize(name),
                size_bytes: size,
                vram_bytes: size_vram,
                context_length,
            })
            .collect(),
    )
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
    fn loaded_models_from_ollama_ps() {
        let body = br#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":3338801804,"digest":"a80c","details":{"format":"gguf"},"expires_at":"2025-10-17T16:47:07Z","size_vram":3338801804,"context_length":4096},{"name":"qwen","model":"qwen","size":10,"size_vram":0}]}"#;
        let models = parse_ps(body).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(
            models[0],
            LoadedModel {
                name: "llama3.2:latest".into(),
                size_bytes: 3338801804,
                vram_bytes: 3338801804,
                context_length: Some(4096)
            }
        );
        assert_eq!(
            models[1],
            LoadedModel {
                name: "qwen:latest".into(),
                size_bytes: 10,
                vram_bytes: 0,
                context_length: None
            }
        );
        assert_eq!(parse_ps(br#"{"models":null}"#), Some(vec![]));
        assert_eq!(parse_ps(b"garbage"), None);
    }

    #[test]
    fn version_from_ollama_answer() {
        assert_eq!(
            parse_version(br#"{"version":"0.12.6"}"#).as_deref(),
            Some("0.12.6")
        );
        assert_eq!(parse_version(b"404 page not found"), None);
    }
}
