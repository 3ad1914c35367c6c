//! What an instance's listeners serve, and how a reload swaps it without a gap: the proxy port
//! and `metrics_listen_addr` each hold the instance's [`Live`] slot, and every request reads
//! the instance's current state from it once, at its start. A reload puts the new state in
//! the slot; requests already running finish with the state they started with.

use std::sync::Arc;

use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use parking_lot::RwLock;

use super::{own_router, InstanceState};
use crate::proxy::{Proxy, ProxyBody};
use crate::server::PortService;

/// An instance's current state, swapped whole by a reload.
pub(crate) struct Live {
    current: RwLock<Served>,
}

/// What one request needs: the proxy, and the agent's own endpoints.
#[derive(Clone)]
struct Served {
    state: Arc<InstanceState>,
    proxy: Arc<Proxy>,
    /// `/metrics`, `/health`, `/status` for this state.
    own: Router,
}

// === impl Live ===

impl Live {
    pub(crate) fn new(state: Arc<InstanceState>) -> Arc<Live> {
        Arc::new(Live {
            current: RwLock::new(Served::of(state)),
        })
    }

    /// The state new requests are served with.
    pub(crate) fn state(&self) -> Arc<InstanceState> {
        self.current.read().state.clone()
    }

    /// Serves new requests with `state` from now on.
    pub(crate) fn set(&self, state: Arc<InstanceState>) {
        *self.current.write() = Served::of(state);
    }
}

impl Served {
    fn of(state: Arc<InstanceState>) -> Served {
        Served {
            proxy: state.proxy.clone(),
            own: own_router(state.clone()),
            state,
        }
    }
}

/// What the proxy port serves: `/metrics`, `/health` and `/status` (unless they have a
/// listener of their own) through [`own_router`], every other request through
/// [`Proxy::forward`]. A plain function of the request, so a proxied request costs one byte
/// comparison (see [`is_own_path`]) and one read of the slot, not a router.
pub(crate) fn port_service(live: Arc<Live>) -> impl PortService {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let own_path = is_own_path(req.uri().path());
        let (proxy, own) = {
            let served = live.current.read();
            let own = own_path && served.state.config.metrics_listen_addr.is_none();
            (served.proxy.clone(), own.then(|| served.own.clone()))
        };
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
pub(crate) fn own_service(live: Arc<Live>) -> impl PortService {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let router = live.current.read().own.clone();
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
