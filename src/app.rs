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
use hyper::body::Incoming;

use crate::config::Instance;
use crate::labels::Labeler;
use crate::probe::BackendStatus;
use crate::proxy::{self, ClientNaming, Options, Proxy, ProxyBody, Upstream};
use crate::push::PushMetrics;
use crate::server::{self, Gate, PortService};
use crate::snapshot::Family;
use crate::status::{self, Ring, Status};
use crate::store::{Store, DEFAULT_WINDOW};
use crate::{exposition, VERSION};

/// Everything the requests of one `[[instances]]` entry share.
pub struct InstanceState {
    pub config: Instance,
    /// The backend, the store and the options every proxied request uses.
    pub proxy: Arc<Proxy>,
    pub backend: BackendStatus,
    pub labeler: Labeler,
    /// The agent's own series (the push's metrics), shown on this instance's `/metrics` too.
    pub agent_metrics: Arc<AgentMetrics>,
    /// Who may see `/metrics`, `/health` and `/status`.
    pub access: Access,
    /// The status page's recent samples, filled by `status::sample_every`.
    pub ring: Arc<Ring>,
    /// The proxy port's connection cap and counters (all workers together).
    pub proxy_gate: Arc<Gate>,
    /// `metrics_listen_addr`'s, when it is set.
    pub metrics_gate: Option<Arc<Gate>>,
}

/// The agent's own series, which every instance's `/metrics` shows and the agent pushes:
/// the push's metrics, and the labeler for them.
pub struct AgentMetrics {
    /// `None` without writers (or with `--test`).
    pub push: Option<PushMetrics>,
    /// Global labels and `agent_hostname`, for the agent's own series.
    pub labeler: Labeler,
}

// === impl AgentMetrics ===

impl AgentMetrics {
    /// The agent's own series (the writers'), labelled.
    pub fn snapshot(&self) -> Vec<Family> {
        let mut families = self
            .push
            .as_ref()
            .map(PushMetrics::families)
            .unwrap_or_default();
        self.labeler.apply_to_families(&mut families);
        families
    }
}

// === impl InstanceState ===

impl InstanceState {
    pub fn new(config: Instance, labeler: Labeler, agent_metrics: Arc<AgentMetrics>) -> Self {
        let mut store = Store::with_max_models(DEFAULT_WINDOW, config.max_models)
            .with_otel(config.otel_semconv);
        if config.clients.enabled() {
            store = store.count_clients(config.clients.max_clients);
        }
        let proxy = Proxy {
            upstream: Upstream::new(&config.ollama_url, config.timeout),
            store: Arc::new(store),
            options: Options {
                include_usage: config.include_usage,
                passive: config.passive,
                clients: ClientNaming::new(&config.clients),
            },
        };
        InstanceState {
            proxy: Arc::new(proxy),
            backend: BackendStatus::default(),
            labeler,
            agent_metrics,
            access: Access::new(&config),
            ring: Arc::new(Ring::new()),
            proxy_gate: Arc::new(Gate::new("proxy", config.limits)),
            metrics_gate: config
                .metrics_listen_addr
                .map(|_| Arc::new(Gate::new("metrics", config.limits))),
            config,
        }
    }

    /// The instance's store.
    pub fn store(&self) -> &Store {
        &self.proxy.store
    }

    /// The instance's backend.
    pub fn upstream(&self) -> &Upstream {
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
    pub fn snapshot(&self) -> Vec<Family> {
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
    pub fn status(&self) -> Status {
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

/// What the proxy port serves: `/metrics`, `/health` and `/status` (unless they have a
/// listener of their own) through [`own_router`], every other request through
/// [`Proxy::forward`]. A plain function of the request, so a proxied request costs one byte
/// comparison (see [`is_own_path`]), not a router.
pub fn port_service(state: Arc<InstanceState>) -> impl PortService {
    let own = state
        .config
        .metrics_listen_addr
        .is_none()
        .then(|| own_router(state.clone()));
    let proxy = state.proxy.clone();
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let own = own
            .as_ref()
            .filter(|_| is_own_path(req.uri().path()))
            .cloned();
        async move {
            Ok(match own {
                Some(router) => own_answer(router, req).await,
                None => proxy.forward(req).await,
            })
        }
    })
}

/// What `metrics_listen_addr` serves: [`own_router`]'s endpoints, as the proxy port serves
/// them (so that one accept loop, with its bounds, serves both).
pub fn own_service(state: Arc<InstanceState>) -> impl PortService {
    let router = own_router(state);
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let router = router.clone();
        async move { Ok(own_answer(router, req).await) }
    })
}

/// The paths of the agent's own endpoints, told apart by their second byte first: Ollama's
/// paths (`/api/…`, `/v1/…`, `/`) are refused by that one comparison.
fn is_own_path(path: &str) -> bool {
    match path.as_bytes().get(1) {
        Some(b'm') => path == "/metrics",
        Some(b'h') => path == "/health",
        Some(b's') => path == "/status" || path == "/status.json",
        _ => false,
    }
}

/// The agent's own answer, served by axum and handed to hyper whole (both are small).
async fn own_answer(mut router: Router, req: Request<Incoming>) -> axum::http::Response<ProxyBody> {
    use tower_service::Service as _;
    let Ok(res) = router.call(req).await;
    let (parts, body) = res.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    axum::http::Response::from_parts(parts, ProxyBody::full(body))
}

/// `GET /metrics`, `GET /health`, `GET /status` and `GET /status.json`, every one behind
/// [`guard`] (the optional bearer token / basic auth).
pub fn own_router(state: Arc<InstanceState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/status.json", get(status))
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

/// `/status` (the page) and `/status.json` (its figures).
async fn status(State(state): State<Arc<InstanceState>>, uri: Uri) -> Response {
    let figures = state.status();
    if uri.path().ends_with(".json") {
        status::json_response(&figures)
    } else {
        status::html_response(&figures)
    }
}
