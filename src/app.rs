//! One instance's HTTP face: `GET /metrics`, `GET /health`, and everything else to the proxy.
//!
//! [`router`] needs no socket, so tests can drive it with `oneshot`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::agent::Shared;
use crate::config::Instance;
use crate::labels::Labeler;
use crate::probe::BackendStatus;
use crate::proxy::{self, Upstream};
use crate::snapshot::Family;
use crate::store::Store;
use crate::{exposition, VERSION};

/// Everything the requests of one `[[instances]]` entry share.
pub struct InstanceState {
    pub config: Instance,
    pub upstream: Upstream,
    pub store: Arc<Store>,
    pub backend: BackendStatus,
    pub labeler: Labeler,
    /// What every instance shares (the push's own metrics).
    pub shared: Arc<Shared>,
}

// === impl InstanceState ===

impl InstanceState {
    pub fn new(config: Instance, labeler: Labeler, shared: Arc<Shared>) -> Self {
        InstanceState {
            upstream: Upstream::new(&config.ollama_url, config.timeout),
            store: Arc::new(Store::with_max_models(crate::WINDOW, config.max_models)),
            backend: BackendStatus::default(),
            labeler,
            shared,
            config,
        }
    }

    /// The store's families with instance labels, global labels and `agent_hostname` applied.
    pub fn snapshot(&self) -> Vec<Family> {
        let mut families = self.store.snapshot();
        for family in &mut families {
            for series in &mut family.series {
                self.labeler.apply(&mut series.labels);
            }
        }
        families
    }
}

/// The instance's router: the agent's own endpoints, then the proxy for everything else.
pub fn router(state: Arc<InstanceState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(proxy::forward)
        .with_state(state)
}

async fn metrics(State(state): State<Arc<InstanceState>>) -> Response {
    let mut text = String::with_capacity(8192);
    exposition::render(&state.snapshot(), &mut text);
    exposition::render(&state.shared.snapshot(), &mut text);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(exposition::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

async fn health(State(state): State<Arc<InstanceState>>) -> Response {
    let checked = state.backend.get();
    let up = checked.up;
    let body = serde_json::json!({
        "status": if up { "ok" } else { "backend_down" },
        "version": VERSION,
        "backend": state.upstream.url,
        "backend_up": up,
        "backend_version": checked.version,
        "backend_error": checked.error,
        "checked": checked.checked,
    });
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}
