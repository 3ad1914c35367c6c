//! Who a metered request is for (the `client_*` options): the first configured header present,
//! else the body's top-level `user`, else a short hash of the API key. The value becomes a
//! bounded, safe label here, before the tap and the store see it.
//!
//! Hot path: with no source configured the proxy holds no [`ClientNaming`] and does none of
//! this. With one, a request costs one header lookup per configured header (and two for the
//! API key), and one small allocation for the label it finds.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use ring::digest::{digest, SHA256};

use crate::config::Clients;

/// Longest client label, in bytes; longer values are cut on a character boundary.
pub(crate) const MAX_CLIENT_BYTES: usize = 128;
/// Hex digits of the SHA-256 kept in a hashed label (48 bits).
const HASH_HEX: usize = 12;
/// Prefix of a label that is an API key's hash.
const KEY_PREFIX: &str = "key-";
/// Prefix of a header or body value's hash (`client_hash`).
const HASH_PREFIX: &str = "hash-";
/// Anthropic's API key header.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// An instance's client sources, ready for the hot path.
#[derive(Debug, Clone)]
pub(crate) struct ClientNaming {
    headers: Vec<HeaderName>,
    from_body: bool,
    from_api_key: bool,
    hash: bool,
}

// === impl ClientNaming ===

impl ClientNaming {
    /// The naming of an instance's options; `None` when no source is configured.
    pub(crate) fn new(c: &Clients) -> Option<Self> {
        c.enabled().then(|| ClientNaming {
            headers: c.headers.clone(),
            from_body: c.from_body,
            from_api_key: c.from_api_key,
            hash: c.hash,
        })
    }

    /// The value of the first configured header present with a non-blank value.
    pub(crate) fn header<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        self.headers.iter().find_map(|name| {
            headers
                .get(name)
                .filter(|v| !v.as_bytes().trim_ascii().is_empty())
        })
    }

    /// Whether the body's `user` is worth reading: the option is on and no header named the
    /// client already (it would win).
    pub(crate) fn wants_user(&self, from_header: Option<&HeaderValue>) -> bool {
        self.from_body && from_header.is_none()
    }

    /// The client label, in order of precedence: the header value found by
    /// [`ClientNaming::header`], else the body's `user` (when not blank), else the API key's
    /// hash; `None` when the request names no client.
    pub(crate) fn label(
        &self,
        from_header: Option<&HeaderValue>,
        user: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<String> {
        if let Some(v) = from_header {
            return Some(self.value_label(&String::from_utf8_lossy(v.as_bytes())));
        }
        if let Some(u) = user.filter(|_| self.from_body) {
            if !u.trim().is_empty() {
                return Some(self.value_label(u));
            }
        }
        if self.from_api_key {
            return api_key(headers).map(|key| hashed(KEY_PREFIX, key));
        }
        None
    }

    /// The label of a header or body value: its hash with `client_hash`, else the value made
    /// safe.
    fn value_label(&self, value: &str) -> String {
        let value = value.trim();
        if self.hash {
            hashed(HASH_PREFIX, value.as_bytes())
        } else {
            safe_label(value)
        }
    }
}

/// The token of `Authorization: Bearer <token>`, else of `x-api-key: <token>` (Anthropic's
/// header); blank ones do not count.
fn api_key(headers: &HeaderMap) -> Option<&[u8]> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes().trim_ascii_start();
        let (scheme, token) = v.split_at_checked(6)?;
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| token.trim_ascii())
            .filter(|t| !t.is_empty() && token.first().is_some_and(u8::is_ascii_whitespace))
    });
    bearer.or_else(|| {
        headers
            .get(X_API_KEY)
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|t| !t.is_empty())
    })
}

/// `prefix` and the first [`HASH_HEX`] hex digits of the SHA-256 of `bytes`.
fn hashed(prefix: &str, bytes: &[u8]) -> String {
    let d = digest(&SHA256, bytes);
    let mut out = String::with_capacity(prefix.len() + HASH_HEX);
    out.push_str(prefix);
    for b in &d.as_ref()[..HASH_HEX / 2] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `value` as a label: control characters (newline, tab, ...) replaced by `_`, cut to at most
/// [`MAX_CLIENT_BYTES`] on a character boundary. Quotes and backslashes stay: the exposition
/// escapes them.
pub(crate) fn safe_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_CLIENT_BYTES));
    for c in value.chars() {
        let c = if c.is_control() { '_' } else { c };
        if out.len() + c.len_utf8() > MAX_CLIENT_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
