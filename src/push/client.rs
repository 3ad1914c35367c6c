//! One writer's HTTP side: the reqwest client built from a `[[writers]]` entry (TLS, timeouts,
//! pool), the request with its reserved headers, and the answer turned into a [`RetryAction`].

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Url};

use super::retry::RetryAction;
use super::PushError;
use crate::config::Writer;

/// Protocol constants: the headers every remote-write request carries.
pub(crate) mod headers {
    pub(crate) const CONTENT_ENCODING: &str = "content-encoding";
    pub(crate) const SNAPPY: &str = "snappy";
    pub(crate) const CONTENT_TYPE: &str = "content-type";
    pub(crate) const APPLICATION_X_PROTOBUF: &str = "application/x-protobuf";
    pub(crate) const USER_AGENT: &str = "user-agent";
    pub(crate) const X_PROMETHEUS_REMOTE_WRITE_VERSION: &str = "x-prometheus-remote-write-version";
    /// Remote-write 1.0 sends this version string.
    pub(crate) const VERSION: &str = "0.1.0";
    /// Headers that a writer's `headers` pairs may not override.
    pub(crate) const RESERVED: [&str; 4] = [
        CONTENT_ENCODING,
        CONTENT_TYPE,
        USER_AGENT,
        X_PROMETHEUS_REMOTE_WRITE_VERSION,
    ];
}

/// At most this much of an error body is read and logged.
pub(crate) const MAX_ERROR_BODY: usize = 512;
/// Reading an error body never takes longer than this (even with `timeout = 0`).
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends bodies to one writer URL.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    url: Url,
    /// The four reserved headers, then the writer's own pairs.
    headers: HeaderMap,
    basic_auth: Option<(String, String)>,
    /// Whole-request timeout; `None` = no limit.
    timeout: Option<Duration>,
}

/// The answer to one attempt.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) action: RetryAction,
    /// For the logs: `HTTP 400 Bad Request: "body"` or the transport error chain.
    pub(crate) detail: String,
}

// === impl Client ===

impl Client {
    /// Builds the client for `writers[index]`. A reserved header among its pairs is ignored
    /// with one warning, here; an unreadable `tls_ca` or an invalid header is an error.
    pub(crate) fn new(index: usize, w: &Writer) -> Result<Client, PushError> {
        let url = Url::parse(&w.url).map_err(|e| PushError::Url {
            index,
            url: redact(&w.url),
            reason: e.to_string(),
        })?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(w.max_idle_conns_per_host);
        if !w.dial_timeout.is_zero() {
            builder = builder.connect_timeout(w.dial_timeout);
        }
        // Categraf reads tls_ca / insecure_skip_verify only when use_tls is set.
        if w.use_tls {
            builder = builder.danger_accept_invalid_certs(w.insecure_skip_verify);
            for cert in ca_certificates(index, w)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| PushError::Client {
            index,
            url: redact(&w.url),
            reason: error_chain(&e.without_url()),
        })?;
        Ok(Client {
            http,
            url,
            headers: request_headers(index, w)?,
            basic_auth: Some((w.basic_auth_user.clone(), w.basic_auth_pass.clone()))
                .filter(|(user, _)| !user.is_empty()),
            timeout: Some(w.timeout).filter(|t| !t.is_zero()),
        })
    }

    /// POSTs one compressed body and classifies the answer. Never panics, never retries.
    pub(crate) async fn send(&self, body: Vec<u8>) -> Reply {
        let mut request = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        if let Some((user, pass)) = &self.basic_auth {
            request = request.basic_auth(user, Some(pass));
        }
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Reply {
                    action: RetryAction::from_transport_error(),
                    detail: error_chain(&e.without_url()),
                }
            }
        };
        let status = response.status();
        let action = RetryAction::from_status(status, response.headers());
        let detail = match action {
            // The spec says to ignore the body of a success.
            RetryAction::Success => String::new(),
            _ => {
                let body = tokio::time::timeout(ERROR_BODY_TIMEOUT, read_prefix(&mut response))
                    .await
                    .unwrap_or_default();
                // 499 (Nightingale's back-pressure) has no reason phrase: not "<unknown ...>".
                match status.canonical_reason() {
                    Some(reason) => format!("HTTP {} {reason}: {body:?}", status.as_u16()),
                    None => format!("HTTP {}: {body:?}", status.as_u16()),
                }
            }
        };
        Reply { action, detail }
    }
}

/// Up to [`MAX_ERROR_BODY`] bytes of the body, lossily as UTF-8; stops reading there.
async fn read_prefix(response: &mut reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The reserved four, then the writer's pairs minus any reserved one (warned about once).
fn request_headers(index: usize, w: &Writer) -> Result<HeaderMap, PushError> {
    let mut map = HeaderMap::new();
    let reserved = [
        (headers::CONTENT_ENCODING, headers::SNAPPY),
        (headers::CONTENT_TYPE, headers::APPLICATION_X_PROTOBUF),
        (headers::USER_AGENT, crate::USER_AGENT),
        (headers::X_PROMETHEUS_REMOTE_WRITE_VERSION, headers::VERSION),
    ];
    for (name, value) in reserved {
        map.insert(name, HeaderValue::from_static(value));
    }
    let mut ignored = Vec::new();
    for (name, value) in &w.headers {
        let invalid = |reason: String| PushError::Header {
            index,
            url: redact(&w.url),
            name: name.clone(),
            reason,
        };
        let key = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| invalid(format!("bad name: {e}")))?;
        if headers::RESERVED.contains(&key.as_str()) {
            ignored.push(name.as_str());
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|e| invalid(format!("bad value: {e}")))?;
        map.append(key, value);
    }
    if !ignored.is_empty() {
        tracing::warn!(
            url = %redact(&w.url),
            "writers[{index}].headers: ignoring {ignored:?}: remote-write sets these headers itself"
        );
    }
    Ok(map)
}

/// The certificates of `tls_ca`: inline PEM when it contains "-----BEGIN", else a file path.
fn ca_certificates(index: usize, w: &Writer) -> Result<Vec<Certificate>, PushError> {
    let ca = w.tls_ca.trim();
    if ca.is_empty() {
        return Ok(Vec::new());
    }
    let (pem, source) = if ca.contains("-----BEGIN") {
        (ca.as_bytes().to_vec(), "inline PEM".to_owned())
    } else {
        let pem = std::fs::read(ca).map_err(|e| PushError::TlsCa {
            index,
            url: redact(&w.url),
            reason: format!("cannot read {ca:?}: {e}"),
        })?;
        (pem, format!("{ca:?}"))
    };
    let bad = |reason: String| PushError::TlsCa {
        index,
        url: redact(&w.url),
        reason,
    };
    let certs = Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("{source}: {}", error_chain(&e))))?;
    if certs.is_empty() {
        return Err(bad(format!("{source}: no PEM certificate found")));
    }
    Ok(certs)
}

/// The URL without userinfo (`user:pass@`), as written otherwise: the `url` label and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// An error and its sources on one line: `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn writer(url: &str) -> Writer {
        Writer::new(url)
    }

    #[test]
    fn redact_removes_userinfo_only() {
        assert_eq!(redact("http://u:p@h:1/w?x=@"), "http://h:1/w?x=@");
        assert_eq!(redact("https://u@h/w"), "https://h/w");
        assert_eq!(redact("http://a@b@h/"), "http://h/");
        assert_eq!(
            redact("http://h:1/prometheus/v1/write"),
            "http://h:1/prometheus/v1/write"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn reserved_headers_cannot_be_overridden() {
        let mut w = writer("http://h/w");
        w.headers = vec![
            ("Content-Type".into(), "text/plain".into()),
            ("USER-AGENT".into(), "evil".into()),
            ("X-Scope-OrgID".into(), "t1".into()),
            ("Host".into(), "n9e.example".into()),
        ];
        let map = request_headers(0, &w).unwrap();
        assert_eq!(map.get_all("content-type").iter().count(), 1);
        assert_eq!(map["content-type"], "application/x-protobuf");
        assert_eq!(map["user-agent"], crate::USER_AGENT);
        assert_eq!(map["x-prometheus-remote-write-version"], "0.1.0");
        assert_eq!(map["content-encoding"], "snappy");
        assert_eq!(map["x-scope-orgid"], "t1");
        assert_eq!(map["host"], "n9e.example");
    }

    #[test]
    fn an_invalid_header_names_the_writer_and_field() {
        let mut w = writer("http://u:secret@h/w");
        w.headers = vec![("bad name".into(), "v".into())];
        let e = request_headers(2, &w).unwrap_err().to_string();
        assert!(e.starts_with("writers[2].headers: "), "{e}");
        assert!(e.contains("http://h/w") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn an_unreadable_tls_ca_names_the_file_and_field() {
        let mut w = writer("https://h/w");
        w.use_tls = true;
        w.tls_ca = "/nonexistent/ca.pem".into();
        let e = Client::new(1, &w).unwrap_err().to_string();
        assert!(e.starts_with("writers[1].tls_ca: "), "{e}");
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("https://h/w"),
            "{e}"
        );
    }

    #[test]
    fn a_tls_ca_without_certificates_is_an_error() {
        let mut w = writer("https://h/w");
        w.use_tls = true;
        w.tls_ca = "-----BEGIN NOTHING-----\n-----END NOTHING-----\n".into();
        let e = Client::new(0, &w).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn tls_keys_are_ignored_without_use_tls() {
        let mut w = writer("https://h/w");
        w.tls_ca = "/nonexistent/ca.pem".into();
        assert!(Client::new(0, &w).is_ok());
    }
}
