//! Per-client attribution options of an instance (`client_headers`, `client_from_body`,
//! `client_from_api_key`, `client_hash`, `max_clients`): validated once, so that the hot path
//! holds parsed header names.

use axum::http::HeaderName;

use super::raw::RawInstance;
use super::validate::invalid;
use super::ConfigError;

/// `[[instances]] max_clients` when absent.
pub const DEFAULT_MAX_CLIENTS: usize = 50;

/// Where an instance reads the client of a request from, and how it labels it. Off (no
/// source) by default; see README, "Who uses the GPU".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clients {
    /// `client_headers`, in order: the first one present on a request, with a value, names
    /// its client.
    pub headers: Vec<HeaderName>,
    /// `client_from_body`: the top-level string `user` of the JSON body (OpenAI's field).
    pub from_body: bool,
    /// `client_from_api_key`: a short hash of `Authorization: Bearer <token>` or `x-api-key`.
    pub from_api_key: bool,
    /// `client_hash`: every header or body value is labelled by its hash instead.
    pub hash: bool,
    /// `max_clients`: distinct client labels kept (`unknown` and `other` not included).
    pub max_clients: usize,
}

// === impl Clients ===

impl Default for Clients {
    fn default() -> Self {
        Clients {
            headers: Vec::new(),
            from_body: false,
            from_api_key: false,
            hash: false,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl Clients {
    /// Whether any source of a client value is configured (`client_hash` and `max_clients`
    /// alone change nothing).
    pub fn enabled(&self) -> bool {
        !self.headers.is_empty() || self.from_body || self.from_api_key
    }

    /// The options of instance `i` of `file`; a header name that is not one is an error
    /// naming the entry.
    pub(super) fn validate(file: &str, i: usize, raw: &RawInstance) -> Result<Self, ConfigError> {
        let headers = raw
            .client_headers
            .iter()
            .enumerate()
            .map(|(j, name)| {
                HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    invalid(
                        file,
                        format!("instances[{i}].client_headers[{j}]"),
                        format!("{name:?} is not an HTTP header name"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Clients {
            headers,
            from_body: raw.client_from_body,
            from_api_key: raw.client_from_api_key,
            hash: raw.client_hash,
            max_clients: raw.max_clients,
        })
    }

    /// A warning for options that have no effect: `client_hash` without any source.
    pub(super) fn warning(&self, file: &str, i: usize) -> Option<String> {
        (self.hash && !self.enabled()).then(|| {
            format!(
                "{file}: instances[{i}].client_hash: has no effect without client_headers, \
                 client_from_body or client_from_api_key"
            )
        })
    }
}
