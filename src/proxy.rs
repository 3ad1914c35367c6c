//! The transparent proxy: forwards every request to `ollama_url` and streams the answer back
//! unchanged, with the tap on inference endpoints.
//!
//! Only `ollama_url` is ever contacted: the request's own authority (absolute-form targets) is
//! refused, and the upstream URI is built from the configured base and the request's path.

mod body;
mod headers;
mod request;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::uri::{PathAndQuery, Scheme};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

pub use body::{BoxError, IdleBody, IdleTimeout, Progress, UpstreamBody};
pub use headers::strip_hop_by_hop;

use crate::app::InstanceState;
use crate::store::Outcome;
use crate::tap::route::Endpoint;
use crate::tap::{Meter, TapBody};
pub use request::{Peeked, PEEK_LIMIT};

/// Request header bytes forwarded at most (names, values and their framing); a larger block
/// gets a 431 and never reaches Ollama. hyper alone stops only at 100 headers or ~400 KB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Idle pooled connections kept to the backend (the original plugin's transport kept 100).
const POOL_IDLE: usize = 100;
/// How long an idle pooled backend connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keepalive on backend connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type ClientError = hyper_util::client::legacy::Error;

/// The backend: a pooled HTTP client and the parts of `ollama_url` every request needs.
pub struct Upstream {
    client: Client<Connector, UpstreamBody>,
    scheme: Scheme,
    authority: axum::http::uri::Authority,
    host: HeaderValue,
    /// Path prefix of `ollama_url` without its trailing `/` ("" for none).
    prefix: String,
    /// `ollama_url` as configured, for messages.
    pub url: String,
    /// Bounds connecting, waiting for non-inference answers, each gap inside an answer, and
    /// the agent's own GETs as a whole.
    pub timeout: Duration,
}

// === impl Upstream ===

impl Upstream {
    pub fn new(url: &Uri, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        let authority = url
            .authority()
            .expect("validated ollama_url has a host")
            .clone();
        let host =
            HeaderValue::from_str(authority.as_str()).expect("an authority is a header value");
        Upstream {
            client,
            scheme: url.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority,
            host,
            prefix: url.path().trim_end_matches('/').to_string(),
            url: url.to_string().trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// The backend URI for a request's path and query: the configured scheme and authority
    /// always, never the request's own.
    fn uri_for(&self, path: Option<&PathAndQuery>) -> Uri {
        let root = PathAndQuery::from_static("/");
        let path = path.unwrap_or(&root);
        let path = if self.prefix.is_empty() {
            path.clone()
        } else {
            // `prefix` is a validated URI path and `path` a valid path: so is their join.
            PathAndQuery::try_from(format!("{}{}", self.prefix, path.as_str())).unwrap_or(root)
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .expect("scheme, authority and path are valid")
    }

    /// The agent's own GET (the backend check), with `timeout` for the whole answer.
    pub async fn get(&self, path: &'static str) -> Result<(StatusCode, bytes::Bytes), String> {
        let req = axum::http::Request::get(self.uri_for(Some(&PathAndQuery::from_static(path))))
            .header(header::HOST, self.host.clone())
            .header(header::USER_AGENT, crate::USER_AGENT)
            .body(UpstreamBody::empty())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let res = self.client.request(req).await.map_err(|e| describe(&e))?;
            let status = res.status();
            let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok((status, body.to_bytes()))
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// The fallback handler: everything that is not the agent's own endpoint goes to Ollama.
pub async fn forward(State(state): State<Arc<InstanceState>>, req: Request) -> Response {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    if let Some(refused) = refuse_target(&parts.method, &parts.uri) {
        return refused;
    }
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("ollama-tap: the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        );
    }
    let endpoint = Endpoint::classify(&parts.method, parts.uri.path());
    let up = &state.upstream;

    let (mut meter, body) = match endpoint {
        None => (None, UpstreamBody::plain(body)),
        Some(endpoint) => {
            let mut meter = Meter::new(state.store.clone(), endpoint, start);
            let rewrite = state.config.include_usage && endpoint == Endpoint::OpenAiChat;
            let zstd = request::is_zstd(&parts.headers);
            let mut peeked = match Peeked::read(body, zstd, rewrite).await {
                Ok(p) => p,
                // The client's body broke off: nobody is left to answer; the meter records
                // the request as aborted when it drops.
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "ollama-tap: the request body broke off",
                    )
                }
            };
            meter.set_model(peeked.model.take());
            if rewrite {
                meter.strip_usage = peeked.add_include_usage(endpoint, &mut parts.headers);
            }
            (Some(meter), peeked.into_body())
        }
    };

    parts.uri = up.uri_for(parts.uri.path_and_query());
    // HTTP/1.1 upstream whatever the client spoke (an HTTP/1.0 client still gets its answer).
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::HOST, up.host.clone());
    // `start` (handler entry) to here, the body peek included: see `Store::observe_overhead`.
    state.store.observe_overhead(start.elapsed());
    let progress = body.progress();
    let sent = up
        .client
        .request(axum::http::Request::from_parts(parts, body));
    // Inference answers may legitimately take minutes before their first byte (model load,
    // long prompt, `stream: false`): only the connect timeout bounds them. Everything else
    // answers within `timeout` of its request body's last move, or is stuck.
    let answer = if meter.is_some() {
        sent.await
    } else {
        match answer_within(up.timeout, sent, progress.as_deref()).await {
            Some(r) => r,
            None => {
                if state.config.passive {
                    state.store.set_up(false);
                }
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
        Err(e) if client_body_failed(&e) => {
            // The client went away in the middle of its body: nothing is wrong with Ollama.
            // The meter records `client_aborted` when it drops.
            return error(
                StatusCode::BAD_REQUEST,
                "ollama-tap: the request body broke off",
            );
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
            if state.config.passive {
                state.store.set_up(false);
            }
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

    if state.config.passive {
        // A strictly passive agent learns that the backend is up from the traffic alone.
        state.store.set_up(true);
    }
    let (mut parts, incoming) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let idle = IdleBody::new(incoming, up.timeout);
    let body = match meter {
        Some(meter) => Body::new(TapBody::new(idle, meter, parts.status, &parts.headers)),
        None => Body::new(idle),
    };
    Response::from_parts(parts, body)
}

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

/// A 400 for request targets the agent never serves: absolute-form (`GET http://host/`) and
/// `CONNECT`. Only `ollama_url` is ever contacted, whatever the request names.
pub fn refuse_target(method: &Method, uri: &Uri) -> Option<Response> {
    (uri.authority().is_some() || method == Method::CONNECT).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "ollama-tap only forwards origin-form requests (a path, not a URL) to its configured Ollama",
        )
    })
}

/// An answer in Ollama's error shape: `{"error": "..."}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// An error and its sources, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |s| s.source())
}

/// The innermost cause of a client error, which names what went wrong (refused, timed out...).
fn describe(e: &ClientError) -> String {
    let cause = chain(e).last().map(ToString::to_string).unwrap_or_default();
    if e.is_connect() {
        format!("connect: {cause}")
    } else {
        cause
    }
}

/// Whether the upstream request failed because the client's own body failed (the client hung
/// up mid-upload): the body sent upstream is the only source of an `axum::Error` in the chain.
fn client_body_failed(e: &ClientError) -> bool {
    chain(e).any(|s| s.is::<axum::Error>())
}

/// Whether an I/O timeout is anywhere in the chain (the connect timeout, or the OS timing the
/// connection out).
fn is_timeout(e: &ClientError) -> bool {
    chain(e).any(is_io_timeout)
}

fn is_io_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::new(&url.parse().unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn upstream_uri_keeps_only_the_configured_host_and_prefix() {
        let up = upstream("http://10.0.0.5:11434");
        let pq = PathAndQuery::from_static("/api/tags?x=1");
        assert_eq!(
            up.uri_for(Some(&pq)).to_string(),
            "http://10.0.0.5:11434/api/tags?x=1"
        );
        assert_eq!(up.uri_for(None).to_string(), "http://10.0.0.5:11434/");
        let up = upstream("https://gpu.example.com/ollama/");
        assert_eq!(
            up.uri_for(Some(&pq)).to_string(),
            "https://gpu.example.com/ollama/api/tags?x=1"
        );
        assert_eq!(up.host, "gpu.example.com");
        assert_eq!(up.url, "https://gpu.example.com/ollama");
    }

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
