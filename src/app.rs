//! One instance's HTTP face: `GET /metrics`, `GET /health`, and everything else to the proxy.
//!
//! [`router`] needs no socket, so tests can drive it with `oneshot`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::agent::AgentMetrics;
use crate::config::Instance;
use crate::labels::Labeler;
use crate::probe::BackendStatus;
use crate::proxy::{self, Upstream};
use crate::snapshot::Family;
use crate::store::{Store, DEFAULT_WINDOW};
use crate::{exposition, VERSION};

/// Everything the requests of one `[[instances]]` entry share.
pub struct InstanceState {
    pub config: Instance,
    pub upstream: Upstream,
    pub store: Arc<Store>,
    pub backend: BackendStatus,
    pub labeler: Labeler,
    /// The agent's own series (the push's metrics), shown on this instance's `/metrics` too.
    pub agent_metrics: Arc<AgentMetrics>,
    /// Who may see `/metrics` and `/health`.
    pub access: Access,
}

// === impl InstanceState ===

impl InstanceState {
    pub fn new(config: Instance, labeler: Labeler, agent_metrics: Arc<AgentMetrics>) -> Self {
        InstanceState {
            upstream: Upstream::new(&config.ollama_url, config.timeout),
            store: Arc::new(Store::with_max_models(DEFAULT_WINDOW, config.max_models)),
            backend: BackendStatus::default(),
            labeler,
            agent_metrics,
            access: Access::new(&config),
            config,
        }
    }

    /// The answer for a request the agent's own endpoints must refuse (absolute-form target,
    /// missing credentials), if any.
    fn refuse(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        proxy::refuse_target(method, uri).or_else(|| self.access.check(headers))
    }

    /// The store's families with instance labels, global labels and `agent_hostname` applied.
    pub fn snapshot(&self) -> Vec<Family> {
        let mut families = self.store.snapshot();
        self.labeler.apply_to_families(&mut families);
        families
    }
}

/// The instance's router on its proxy port: the agent's own endpoints (unless they have a
/// listener of their own), then the proxy for everything else.
pub fn router(state: Arc<InstanceState>) -> Router {
    let own = state.config.metrics_listen_addr.is_none();
    let proxy = Router::new()
        .fallback(proxy::forward)
        .with_state(state.clone());
    if own {
        own_router(state).merge(proxy)
    } else {
        proxy
    }
}

/// `GET /metrics` and `GET /health`, behind the optional bearer token / basic auth.
pub fn own_router(state: Arc<InstanceState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
}

/// Credentials `/metrics` and `/health` accept, from the instance config.
#[derive(Debug, Default)]
pub struct Access {
    /// `Bearer <token>`, when a token is configured.
    bearer: Option<String>,
    /// `Basic <base64(user:pass)>`, when a user is configured.
    basic: Option<String>,
}

// === impl Access ===

impl Access {
    pub fn new(config: &Instance) -> Self {
        use base64::Engine;
        let token = &config.metrics_bearer_token;
        let user = &config.metrics_basic_auth_user;
        Access {
            bearer: (!token.is_empty()).then(|| format!("Bearer {token}")),
            basic: (!user.is_empty()).then(|| {
                let pair = format!("{user}:{}", config.metrics_basic_auth_pass);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }),
        }
    }

    /// `None` when the request may see the agent's endpoints, else the 401 answer.
    fn check(&self, headers: &HeaderMap) -> Option<Response> {
        if self.bearer.is_none() && self.basic.is_none() {
            return None;
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let ok = [&self.bearer, &self.basic]
            .into_iter()
            .flatten()
            .any(|want| constant_time_eq(want.as_bytes(), given));
        if ok {
            return None;
        }
        let challenge = if self.basic.is_some() {
            "Basic realm=\"ollama-tap\""
        } else {
            "Bearer"
        };
        let mut res = proxy::error(
            StatusCode::UNAUTHORIZED,
            "ollama-tap: credentials required for /metrics and /health",
        );
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Some(res)
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(
    State(state): State<Arc<InstanceState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = state.refuse(&method, &uri, &headers) {
        return denied;
    }
    let mut text = String::with_capacity(8192);
    exposition::render(&state.snapshot(), &mut text);
    exposition::render(&state.agent_metrics.snapshot(), &mut text);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(exposition::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

async fn health(
    State(state): State<Arc<InstanceState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = state.refuse(&method, &uri, &headers) {
        return denied;
    }
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
