//! One instance's HTTP face: `GET /metrics`, `GET /health`, `GET /status`, `GET /status.json`
//! (axum), and everything else to the proxy (plain hyper, see [`port_service`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::Instance;
use crate::labels::Labeler;
use crate::probe::BackendStatus;
use crate::proxy::{self, ClientNaming, Options, Proxy, Upstream};
use crate::push::PushMetrics;
use crate::server::{self, Gate};
use crate::snapshot::Family;
use crate::status::{self, Ring, Status};
use crate::store::{Store, DEFAULT_WINDOW};
use crate::{exposition, VERSION};

mod live;
mod reloads;

pub(crate) use live::{own_service, port_service, Live};
pub(crate) use reloads::ReloadStatus;

/// Everything the requests of one `[[instances]]` entry share.
pub struct InstanceState {
    pub(crate) config: Instance,
    /// The backend, the store and the options every proxied request uses.
    pub(crate) proxy: Arc<Proxy>,
    /// The backend's last check (kept across reloads).
    pub(crate) backend: Arc<BackendStatus>,
    pub(crate) labeler: Labeler,
    /// The agent's own series (the push's metrics), shown on this instance's `/metrics` too.
    pub(crate) agent_metrics: Arc<AgentMetrics>,
    /// Who may see `/metrics`, `/health` and `/status`.
    pub(crate) access: Access,
    /// The status page's recent samples, filled by `status::sample_every`.
    pub(crate) ring: Arc<Ring>,
    /// The proxy port's connection cap and counters (all workers together).
    pub(crate) proxy_gate: Arc<Gate>,
    /// `metrics_listen_addr`'s, when it is set.
    pub(crate) metrics_gate: Option<Arc<Gate>>,
}

/// The agent's own series, which every instance's `/metrics` shows and the agent pushes:
/// the push's metrics, and the labeler for them.
pub(crate) struct AgentMetrics {
    /// `None` without writers (or with `--test`).
    pub(crate) push: Option<PushMetrics>,
    /// Global labels and `agent_hostname`, for the agent's own series.
    pub(crate) labeler: Labeler,
    /// The last reload's outcome (shared by every generation of the agent's metrics).
    pub(crate) reloads: Arc<ReloadStatus>,
}

// === impl AgentMetrics ===

impl AgentMetrics {
    /// The agent's own series (the writers'), labelled.
    pub(crate) fn snapshot(&self) -> Vec<Family> {
        let mut families = self
            .push
            .as_ref()
            .map(PushMetrics::families)
            .unwrap_or_default();
        self.reloads.families(&mut families);
        self.labeler.apply_to_families(&mut families);
        families
    }
}

// === impl InstanceState ===

impl InstanceState {
    pub(crate) fn new(
        config: Instance,
        labeler: Labeler,
        agent_metrics: Arc<AgentMetrics>,
    ) -> Self {
        InstanceState::build(config, labeler, agent_metrics, None)
    }

    /// The state a reload gives a kept instance (same listen address): its counters (the
    /// store), its recent samples, its backend's last check and its listeners' connection
    /// counts carry over, and so do its backend pools while `ollama_url` and `timeout` stay;
    /// everything else is built from `config`. When `ollama_url`, `max_models`,
    /// `otel_semconv` or the client counting change the store starts anew (a counter reset,
    /// which `rate()` and `increase()` handle).
    pub(crate) fn next(
        &self,
        config: Instance,
        labeler: Labeler,
        agent_metrics: Arc<AgentMetrics>,
    ) -> Self {
        InstanceState::build(config, labeler, agent_metrics, Some(self))
    }

    fn build(
        config: Instance,
        labeler: Labeler,
        agent_metrics: Arc<AgentMetrics>,
        before: Option<&InstanceState>,
    ) -> Self {
        let store = match before.filter(|b| same_store(&b.config, &config)) {
            Some(b) => b.proxy.store.clone(),
            None => Arc::new(new_store(&config)),
        };
        let upstream = match before.map(|b| &b.proxy.upstream) {
            Some(u) if same_backend(u, &config) => u.clone(),
            _ => Arc::new(Upstream::new(&config.ollama_url, config.timeout)),
        };
        let proxy = Proxy {
            upstream,
            store,
            options: Options {
                include_usage: config.include_usage,
                passive: config.passive,
                clients: ClientNaming::new(&config.clients),
            },
        };
        let gate = |listener, old: Option<&Arc<Gate>>| match old {
            Some(g) => {
                g.set_limits(config.limits);
                g.clone()
            }
            None => Arc::new(Gate::new(listener, config.limits)),
        };
        InstanceState {
            proxy: Arc::new(proxy),
            backend: before.map_or_else(Default::default, |b| b.backend.clone()),
            labeler,
            agent_metrics,
            access: Access::new(&config),
            ring: before.map_or_else(|| Arc::new(Ring::new()), |b| b.ring.clone()),
            proxy_gate: gate("proxy", before.map(|b| &b.proxy_gate)),
            metrics_gate: config
                .metrics_listen_addr
                .map(|_| gate("metrics", before.and_then(|b| b.metrics_gate.as_ref()))),
            config,
        }
    }

    /// The instance's store.
    pub(crate) fn store(&self) -> &Store {
        &self.proxy.store
    }

    /// The instance's backend.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.proxy.upstream
    }

    /// The answer for a request the agent's own endpoints must refuse (absolute-form target,
    /// missing credentials), if any.
    fn refuse(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        match proxy::refuse_target(method, uri) {
            Some(why) => Some(error(StatusCode::BAD_REQUEST, why)),
            None => self.access.check(headers),
        }
    }

    /// The store's families and the listeners' connection counts, with instance labels,
    /// global labels and `agent_hostname` applied.
    pub(crate) fn snapshot(&self) -> Vec<Family> {
        let mut families = self.store().snapshot();
        let gates: Vec<&Gate> = std::iter::once(&self.proxy_gate)
            .chain(&self.metrics_gate)
            .map(|g| &**g)
            .collect();
        server::connection_families(&gates, &mut families);
        self.labeler.apply_to_families(&mut families);
        families
    }

    /// What `/status` and `/status.json` show now.
    pub(crate) fn status(&self) -> Status {
        let push = &self.agent_metrics.push;
        Status::compute(&status::Inputs {
            families: &self.store().snapshot(),
            writers: &push.as_ref().map(PushMetrics::families).unwrap_or_default(),
            listen: self.config.proxy_listen_addr.to_string(),
            backend_url: &self.upstream().url,
            backend: &self.backend.get(),
            ring: &self.ring,
            now: tokio::time::Instant::now(),
        })
    }
}

/// A store for `config`: its model cap, its OpenTelemetry names, its client counting.
fn new_store(config: &Instance) -> Store {
    let mut store =
        Store::with_max_models(DEFAULT_WINDOW, config.max_models).with_otel(config.otel_semconv);
    if config.clients.enabled() {
        store = store.count_clients(config.clients.max_clients);
    }
    store
}

/// Whether `upstream` is the backend `config` names, with its timeout.
fn same_backend(upstream: &Upstream, config: &Instance) -> bool {
    upstream.timeout == config.timeout
        && upstream.url == config.ollama_url.to_string().trim_end_matches('/')
}

/// Whether the counters kept for `a` go on for `b`: the same backend, and nothing the store's
/// shape depends on changed.
fn same_store(a: &Instance, b: &Instance) -> bool {
    fn shape(i: &Instance) -> (&axum::http::Uri, usize, bool, bool, usize) {
        let c = &i.clients;
        (
            &i.ollama_url,
            i.max_models,
            i.otel_semconv,
            c.enabled(),
            c.max_clients,
        )
    }
    shape(a) == shape(b)
}

/// `GET /metrics`, `GET /health`, `GET /status` and `GET /status.json`, every one behind
/// [`guard`] (the optional bearer token / basic auth).
pub(crate) fn own_router(state: Arc<InstanceState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/status", get(status_page))
        .route("/status.json", get(status_json))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Runs before every route of [`own_router`]: the refusals (absolute-form target, missing
/// credentials), so that no endpoint of the agent can be added without them.
async fn guard(
    State(state): State<Arc<InstanceState>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    match state.refuse(req.method(), req.uri(), req.headers()) {
        Some(denied) => denied,
        None => next.run(req).await,
    }
}

/// Credentials the agent's own endpoints accept, from the instance config.
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// `Bearer <token>`, when a token is configured.
    bearer: Option<String>,
    /// `Basic <base64(user:pass)>`, when a user is configured.
    basic: Option<String>,
}

// === impl Access ===

impl Access {
    pub(crate) fn new(config: &Instance) -> Self {
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
        let mut res = error(
            StatusCode::UNAUTHORIZED,
            "ollama-tap: credentials required for /metrics, /health and /status",
        );
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Some(res)
    }
}

/// An answer in Ollama's error shape, for the agent's own endpoints.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, proxy::ERROR_CONTENT_TYPE)],
        proxy::error_json(message),
    )
        .into_response()
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<Arc<InstanceState>>) -> Response {
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

async fn health(State(state): State<Arc<InstanceState>>) -> Response {
    let checked = state.backend.get();
    let up = checked.up;
    let body = serde_json::json!({
        "status": if up { "ok" } else { "backend_down" },
        "version": VERSION,
        "backend": state.upstream().url,
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

/// `/status`: the page.
async fn status_page(State(state): State<Arc<InstanceState>>) -> Response {
    status::html_response(&state.status())
}

/// `/status.json`: the page's figures.
async fn status_json(State(state): State<Arc<InstanceState>>) -> Response {
    status::json_response(&state.status())
}
