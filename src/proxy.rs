//! The transparent proxy: forwards every request to `ollama_url` and streams the answer back
//! unchanged, with the tap on inference endpoints.
//!
//! Only `ollama_url` is ever contacted: the request's own authority (absolute-form targets) is
//! refused, and the upstream URI is built from the configured base and the request's path.

mod answer;
mod body;
pub(crate) mod client;
mod failure;
mod headers;
mod request;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::time::Instant;

pub(crate) use answer::{Answer, ProxyBody};
pub use body::BoxError;
pub(crate) use body::{IdleBody, UploadProgress, UpstreamBody};
pub(crate) use client::ClientNaming;
pub(crate) use headers::strip_hop_by_hop;
pub(crate) use request::Peeked;
pub(crate) use upstream::Upstream;

use crate::store::Store;
use crate::tap::{strips_usage, Meter, TapBody, UsageStripped};
use crate::vocab::Endpoint;
use failure::{NoAnswer, BODY_BROKE_OFF};

/// Request header bytes forwarded at most (names, values and their framing); a larger block
/// gets a 431 and never reaches Ollama. hyper alone stops only at 100 headers or ~400 KB.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What the proxy of one instance needs: the backend, the store it meters into, and the two
/// options that change what it does.
pub(crate) struct Proxy {
    /// Shared with the next state a reload gives the instance, when its backend and timeout
    /// stay (its pools, and their idle connections, carry over).
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) store: Arc<Store>,
    pub(crate) options: Options,
}

/// The instance options the proxy reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Add `stream_options.include_usage` to streamed `/v1/chat/completions` requests.
    pub(crate) include_usage: bool,
    /// No backend check runs: the traffic alone says whether the backend is up.
    pub(crate) passive: bool,
    /// Where metered requests name their client; `None`: client attribution is off.
    pub(crate) clients: Option<ClientNaming>,
}

/// A metered request on its way: its meter, and whether the proxy added `include_usage` to
/// it (then the answer's extra usage event is removed again).
struct Tapping {
    meter: Meter,
    usage_added: bool,
}

// === impl Proxy ===

impl Proxy {
    /// Forwards one request to the backend and its answer back, metered on inference
    /// endpoints. Every failure is an answer in Ollama's error shape.
    pub(crate) async fn forward(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        if let Some(refused) = refuse(&parts) {
            return refused;
        }
        let (tapping, body) = match Endpoint::classify(&parts.method, parts.uri.path()) {
            None => (None, UpstreamBody::plain(body)),
            Some(endpoint) => match self.peek(endpoint, start, &mut parts.headers, body).await {
                Some((tapping, body)) => (Some(tapping), body),
                // Nobody is left to answer; the meter, dropped, records `client_aborted`.
                None => return error(StatusCode::BAD_REQUEST, BODY_BROKE_OFF),
            },
        };
        self.upstream.address(&mut parts);
        // `start` to here, the body peek included: see `Store::observe_overhead`.
        self.store.observe_overhead(start.elapsed());
        match self
            .send(Request::from_parts(parts, body), tapping.is_some())
            .await
        {
            Ok(res) => self.relay(res, tapping),
            Err(no_answer) => self.fail(&no_answer, tapping),
        }
    }

    /// Reads the start of a metered request's body for its model (and, with client
    /// attribution, its client), and adds `include_usage` when the option asks for it. `None`:
    /// the client's body broke off.
    async fn peek(
        &self,
        endpoint: Endpoint,
        start: Instant,
        headers: &mut HeaderMap,
        body: Incoming,
    ) -> Option<(Tapping, UpstreamBody)> {
        let mut meter = Meter::new(self.store.clone(), endpoint, start);
        let rewrite = self.options.include_usage && endpoint == Endpoint::OpenAiChat;
        let zstd = request::is_zstd(headers);
        let naming = self.options.clients.as_ref();
        let named = naming.and_then(|n| n.header(headers));
        let want_user = naming.is_some_and(|n| n.wants_user(named));
        let mut peeked = Peeked::read(body, zstd, rewrite, want_user).await.ok()?;
        meter.set_model(peeked.model.take());
        if let Some(n) = naming {
            meter.set_client(n.label(named, peeked.user.as_deref(), headers));
        }
        let usage_added = rewrite && peeked.add_include_usage(endpoint, headers);
        let tapping = Tapping { meter, usage_added };
        Some((tapping, peeked.into_body()))
    }

    /// Sends the request and waits for the answer's head. Inference answers may legitimately
    /// take minutes before their first byte (model load, long prompt, `stream: false`): only
    /// the connect timeout bounds them. Everything else answers within `timeout` of its
    /// request body's last move, or is stuck.
    async fn send(
        &self,
        req: Request<UpstreamBody>,
        metered: bool,
    ) -> Result<Response<Answer>, NoAnswer> {
        let up = &self.upstream;
        let progress = req.body().progress();
        let sent = up.send(req);
        let answer = if metered {
            sent.await
        } else {
            answer_within(up.timeout, sent, progress.as_deref())
                .await
                .ok_or(NoAnswer::Stuck)?
        };
        answer.map_err(NoAnswer::from)
    }

    /// The backend's answer on its way to the client: without hop-by-hop headers, under the
    /// idle timeout, through the tap when the request is metered.
    fn relay(&self, res: Response<Answer>, tapping: Option<Tapping>) -> Response<ProxyBody> {
        self.backend_seen(true);
        let (mut parts, answer) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let idle = IdleBody::new(answer, self.upstream.timeout);
        let body = match tapping {
            Some(tapping) => tapping.body(idle, parts.status, &parts.headers),
            None => ProxyBody::Plain(idle),
        };
        Response::from_parts(parts, body)
    }

    /// The answer to a request the backend did not answer, as [`NoAnswer`]'s table says.
    fn fail(&self, no_answer: &NoAnswer, tapping: Option<Tapping>) -> Response<ProxyBody> {
        let (status, outcome) = no_answer.status_and_outcome();
        if let Some(outcome) = outcome {
            if let Some(mut tapping) = tapping {
                tapping.meter.fail(outcome);
            }
            self.backend_seen(false);
        }
        error(status, &no_answer.message(&self.upstream))
    }

    /// A strictly passive agent learns whether the backend is up from the traffic alone.
    fn backend_seen(&self, up: bool) {
        if self.options.passive {
            self.store.set_up(up);
        }
    }
}

// === impl Tapping ===

impl Tapping {
    /// The answer's body through the tap, and through [`UsageStripped`] when the proxy
    /// caused the usage event.
    fn body(self, idle: IdleBody<Answer>, status: StatusCode, headers: &HeaderMap) -> ProxyBody {
        let tapped = TapBody::new(idle, self.meter, status, headers);
        if self.usage_added && strips_usage(status, headers) {
            ProxyBody::Stripped(UsageStripped::new(tapped))
        } else {
            ProxyBody::Tapped(tapped)
        }
    }
}

/// The answer to a request that is never forwarded: a target naming another host (see
/// [`refuse_target`]), or a header block larger than [`MAX_HEADER_BYTES`].
fn refuse(parts: &Parts) -> Option<Response<ProxyBody>> {
    if let Some(refused) = refuse_target(&parts.method, &parts.uri) {
        return Some(error(StatusCode::BAD_REQUEST, refused));
    }
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (header_bytes > MAX_HEADER_BYTES).then(|| {
        error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("ollama-tap: the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        )
    })
}

/// Waits for `sent` (the backend's answer head) until `timeout` has passed with neither the
/// answer nor any progress of the request body upstream: a slow upload is not cut, a backend
/// that stops reading or answering is. `None` on timeout.
async fn answer_within<F: std::future::Future>(
    timeout: Duration,
    sent: F,
    progress: Option<&UploadProgress>,
) -> Option<F::Output> {
    tokio::pin!(sent);
    let mut deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, &mut sent).await {
            Ok(r) => return Some(r),
            Err(_) => match progress.and_then(UploadProgress::last).map(|t| t + timeout) {
                Some(next) if next > deadline => deadline = next,
                _ => return None,
            },
        }
    }
}

/// Why the agent never serves this request target, if it does not: absolute-form
/// (`GET http://host/`) and `CONNECT` (answered 400). Only `ollama_url` is ever contacted,
/// whatever the request names.
pub(crate) fn refuse_target(method: &Method, uri: &Uri) -> Option<&'static str> {
    (uri.authority().is_some() || method == Method::CONNECT).then_some(
        "ollama-tap only forwards origin-form requests (a path, not a URL) to its configured Ollama",
    )
}

/// The body of an answer in Ollama's error shape: `{"error": "..."}`.
pub(crate) fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The content type of [`error_json`] answers.
pub(crate) const ERROR_CONTENT_TYPE: HeaderValue =
    HeaderValue::from_static("application/json; charset=utf-8");

/// An answer in Ollama's error shape.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::full(error_json(message)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, ERROR_CONTENT_TYPE);
    res
}
