//! The transparent proxy: forwards every request to `ollama_url` and streams the answer back
//! unchanged, with the tap on inference endpoints.
//!
//! Only `ollama_url` is ever contacted: the request's own authority (absolute-form targets) is
//! refused, and the upstream URI is built from the configured base and the request's path.

mod answer;
mod body;
pub(crate) mod client;
mod headers;
mod request;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

pub(crate) use answer::ProxyBody;
pub use body::BoxError;
pub(crate) use body::{ClientBodyError, IdleBody, Progress, UpstreamBody};
pub(crate) use client::ClientNaming;
pub(crate) use headers::strip_hop_by_hop;
pub(crate) use request::Peeked;
pub(crate) use upstream::{SendError, Upstream};

use crate::store::Store;
use crate::tap::{Meter, TapBody};
use crate::vocab::{Endpoint, Outcome};

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

// === impl Proxy ===

impl Proxy {
    /// Forwards one request to the backend and its answer back, metered on inference
    /// endpoints. Every failure is an answer in Ollama's error shape.
    pub(crate) async fn forward(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        if let Some(refused) = refuse_target(&parts.method, &parts.uri) {
            return error(StatusCode::BAD_REQUEST, refused);
        }
        let header_bytes: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > MAX_HEADER_BYTES {
            return error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!(
                    "ollama-tap: the request headers are larger than {MAX_HEADER_BYTES} bytes"
                ),
            );
        }
        let endpoint = Endpoint::classify(&parts.method, parts.uri.path());
        let up = &self.upstream;

        let (mut meter, body) = match endpoint {
            None => (None, UpstreamBody::plain(body)),
            Some(endpoint) => {
                let mut meter = Meter::new(self.store.clone(), endpoint, start);
                let rewrite = self.options.include_usage && endpoint == Endpoint::OpenAiChat;
                let zstd = request::is_zstd(&parts.headers);
                let naming = self.options.clients.as_ref();
                let named = naming.and_then(|n| n.header(&parts.headers));
                let want_user = naming.is_some_and(|n| n.wants_user(named));
                let Ok(mut peeked) = Peeked::read(body, zstd, rewrite, want_user).await else {
                    // The client's body broke off: nobody is left to answer; the meter
                    // records the request as aborted when it drops.
                    return error(StatusCode::BAD_REQUEST, BODY_BROKE_OFF);
                };
                meter.set_model(peeked.model.take());
                if let Some(n) = naming {
                    meter.set_client(n.label(named, peeked.user.as_deref(), &parts.headers));
                }
                if rewrite {
                    meter.strip_usage = peeked.add_include_usage(endpoint, &mut parts.headers);
                }
                (Some(meter), peeked.into_body())
            }
        };

        parts.uri = up.target_for(parts.uri.path_and_query());
        // HTTP/1.1 upstream whatever the client spoke (an HTTP/1.0 client still gets its answer).
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::HOST, up.host.clone());
        // `start` to here, the body peek included: see `Store::observe_overhead`.
        self.store.observe_overhead(start.elapsed());
        let progress = body.progress();
        let sent = up.send(Request::from_parts(parts, body));
        // Inference answers may legitimately take minutes before their first byte (model load,
        // long prompt, `stream: false`): only the connect timeout bounds them. Everything else
        // answers within `timeout` of its request body's last move, or is stuck.
        let answer = if meter.is_some() {
            sent.await
        } else {
            match answer_within(up.timeout, sent, progress.as_deref()).await {
                Some(r) => r,
                None => {
                    self.backend_seen(false);
                    return error(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "ollama-tap: Ollama at {} did not answer within {:?}",
                            up.url, up.timeout
                        ),
                    );
                }
            }
        };
        let res = match answer {
            Ok(res) => res,
            // The client went away in the middle of its body: nothing is wrong with Ollama.
            // The meter records `client_aborted` when it drops.
            Err(e) if client_body_failed(&e) => {
                return error(StatusCode::BAD_REQUEST, BODY_BROKE_OFF)
            }
            Err(e) => {
                let timeout = is_timeout(&e);
                if let Some(m) = meter.as_mut() {
                    m.fail(if timeout {
                        Outcome::Timeout
                    } else {
                        Outcome::BackendUnreachable
                    });
                }
                self.backend_seen(false);
                let status = if timeout {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return error(
                    status,
                    &format!(
                        "ollama-tap: cannot reach Ollama at {}: {}",
                        up.url,
                        describe(&e)
                    ),
                );
            }
        };

        self.backend_seen(true);
        let (mut parts, incoming) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let idle = IdleBody::new(incoming, up.timeout);
        let body = match meter {
            Some(meter) => {
                ProxyBody::Tapped(TapBody::new(idle, meter, parts.status, &parts.headers))
            }
            None => ProxyBody::Plain(idle),
        };
        Response::from_parts(parts, body)
    }

    /// A strictly passive agent learns whether the backend is up from the traffic alone.
    fn backend_seen(&self, up: bool) {
        if self.options.passive {
            self.store.set_up(up);
        }
    }
}

const BODY_BROKE_OFF: &str = "ollama-tap: the request body broke off";

/// Waits for `sent` (the backend's answer head) until `timeout` has passed with neither the
/// answer nor any progress of the request body upstream: a slow upload is not cut, a backend
/// that stops reading or answering is. `None` on timeout.
async fn answer_within<F: std::future::Future>(
    timeout: Duration,
    sent: F,
    progress: Option<&Progress>,
) -> Option<F::Output> {
    tokio::pin!(sent);
    let mut deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, &mut sent).await {
            Ok(r) => return Some(r),
            Err(_) => match progress.and_then(Progress::last).map(|t| t + timeout) {
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

/// An error and its sources, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |s| s.source())
}

/// The innermost cause of a send error, which names what went wrong (refused, timed out...).
pub(crate) fn describe(e: &SendError) -> String {
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
