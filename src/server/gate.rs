//! One listener's door: the connection cap (`max_connections`) shared by every worker that
//! accepts on it, the count of open connections, and the refusals.
//!
//! A connection beyond the cap is answered at once with a fixed `503` (written without
//! waiting, into the new socket's empty send buffer) and closed, as nginx closes a connection
//! past `worker_connections`: it costs no task, no timer and no read. Waiting instead (not
//! accepting) would leave the client in the kernel's backlog with no answer and no bound.

use parking_lot::RwLock;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::config::Limits;
use crate::snapshot::{Family, Kind};

/// What a refused connection reads before the close.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    Content-Type: application/json; charset=utf-8\r\n\
    Retry-After: 1\r\n\
    Connection: close\r\n\
    Content-Length: 63\r\n\
    \r\n\
    {\"error\":\"ollama-tap: too many connections (max_connections)\"}\n";

/// One listener's cap and counters (the proxy port's, all workers together, or the
/// `metrics_listen_addr`'s).
#[derive(Debug)]
pub(crate) struct Gate {
    /// `proxy` or `metrics`: the `listener` label.
    listener: &'static str,
    /// The timeouts of every connection through this gate (a reload may change them).
    limits: RwLock<Limits>,
    open: AtomicUsize,
    refused: AtomicU64,
    /// Whether the first refusal was logged (once per listener: the rest are counted).
    logged: AtomicBool,
}

/// An admitted connection's place: one fewer open connection when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Gate>);

// === impl Gate ===

impl Gate {
    /// The gate of a `listener` ("proxy" or "metrics") with the instance's `limits`.
    pub(crate) fn new(listener: &'static str, limits: Limits) -> Self {
        Gate {
            listener,
            limits: RwLock::new(limits),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }

    /// Admits `tcp` when under the cap; else answers it `503`, counts and (the first time)
    /// logs the refusal, and drops it (`None`).
    pub(crate) fn admit(self: &Arc<Self>, tcp: TcpStream) -> Option<(TcpStream, Slot)> {
        let before = self.open.fetch_add(1, Relaxed);
        let max = self.limits().max_connections;
        if max == 0 || before < max {
            return Some((tcp, Slot(self.clone())));
        }
        self.open.fetch_sub(1, Relaxed);
        self.refused.fetch_add(1, Relaxed);
        if !self.logged.swap(true, Relaxed) {
            tracing::warn!(
                listener = self.listener,
                max_connections = max,
                "connection refused: max_connections reached (answered 503; further refusals \
                 are counted in ollama_tap_connections_refused_total, not logged)"
            );
        }
        let _ = tcp.try_write(REFUSED);
        None
    }

    /// The timeouts and the cap for the next connection.
    pub(crate) fn limits(&self) -> Limits {
        *self.limits.read()
    }

    /// New timeouts and cap (a reload), for the connections accepted from now on.
    pub(crate) fn set_limits(&self, limits: Limits) {
        *self.limits.write() = limits;
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Connections refused since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// `ollama_tap_connections` and `ollama_tap_connections_refused_total`, a series per gate.
pub(crate) fn families(gates: &[&Gate], out: &mut Vec<Family>) {
    let mut open = Family::new(
        "ollama_tap_connections",
        "Client connections open now on the instance's listener (listener: proxy, or metrics \
         for metrics_listen_addr).",
        Kind::Gauge,
    );
    let mut refused = Family::new(
        "ollama_tap_connections_refused_total",
        "Client connections answered 503 and closed at once because the listener already \
         had max_connections open.",
        Kind::Counter,
    );
    for gate in gates {
        let labels = vec![("listener".to_owned(), gate.listener.to_owned())];
        open.push("", labels.clone(), gate.open() as f64);
        refused.push("", labels, gate.refused() as f64);
    }
    out.extend([open, refused]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_whole_http_answer() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
