//! How long a client may hold a connection without a request in progress, and how many
//! connections an instance's listener serves at once (`client_header_timeout`,
//! `keepalive_timeout`, `max_connections`): nginx's bounds, with nginx's defaults.

use std::time::Duration;

use super::raw::RawInstance;
use super::validate::optional_duration;
use super::ConfigError;

/// `[[instances]] client_header_timeout` when absent or zero (nginx's `client_header_timeout`).
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// `[[instances]] keepalive_timeout` when absent or zero (nginx's `keepalive_timeout`).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// The bounds on an instance's client connections, the same on its proxy port and on its
/// `metrics_listen_addr`; see README, "Configuration". Neither timeout runs while a request
/// is being served (its body read, its answer written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From a new connection, or from the first byte of a request on a kept-alive one, to the
    /// end of the request head. Past it: `408` when part of a head came, else a plain close.
    pub client_header_timeout: Duration,
    /// How long a kept-alive connection may wait, idle, for its next request.
    pub keepalive_timeout: Duration,
    /// Client connections served at once on one listener, all its workers together; 0 = no
    /// cap. Beyond it a new connection is answered `503` and closed.
    pub max_connections: usize,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client_header_timeout: DEFAULT_CLIENT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_connections: 0,
        }
    }
}

impl Limits {
    /// The bounds of instance `i` of `file`; a bad duration is an error naming the field.
    pub(super) fn validate(file: &str, i: usize, raw: &RawInstance) -> Result<Self, ConfigError> {
        let field = |name: &str| format!("instances[{i}].{name}");
        let duration = |name: &str, value, default| {
            optional_duration(file, &field(name), value).map(|d| d.unwrap_or(default))
        };
        Ok(Limits {
            client_header_timeout: duration(
                "client_header_timeout",
                raw.client_header_timeout.as_ref(),
                DEFAULT_CLIENT_HEADER_TIMEOUT,
            )?,
            keepalive_timeout: duration(
                "keepalive_timeout",
                raw.keepalive_timeout.as_ref(),
                DEFAULT_KEEPALIVE_TIMEOUT,
            )?,
            max_connections: raw.max_connections,
        })
    }
}
