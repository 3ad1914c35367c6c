//! Whether the last reload (SIGHUP) took: `ollama_tap_config_last_reload_successful` and the
//! time of the last one that did, as Prometheus' own `prometheus_config_last_reload_*`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::snapshot::{Family, Kind};

pub(crate) const LAST_RELOAD_SUCCESSFUL: &str = "ollama_tap_config_last_reload_successful";
pub(crate) const LAST_RELOAD_SUCCESS: &str =
    "ollama_tap_config_last_reload_success_timestamp_seconds";

/// The outcome of the last reload; the start counts as one that took.
#[derive(Debug)]
pub(crate) struct ReloadStatus {
    ok: AtomicBool,
    /// Milliseconds since the epoch of the start or the last reload that took.
    at_ms: AtomicU64,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus {
            ok: AtomicBool::new(true),
            at_ms: AtomicU64::new(now_ms()),
        }
    }
}

impl ReloadStatus {
    /// A reload took.
    pub(crate) fn succeeded(&self) {
        self.ok.store(true, Relaxed);
        self.at_ms.store(now_ms(), Relaxed);
    }

    /// A reload was refused: the configuration before it stays in force.
    pub(crate) fn failed(&self) {
        self.ok.store(false, Relaxed);
    }

    pub(crate) fn ok(&self) -> bool {
        self.ok.load(Relaxed)
    }

    /// The two gauges.
    pub(crate) fn families(&self, out: &mut Vec<Family>) {
        let mut ok = Family::new(
            LAST_RELOAD_SUCCESSFUL,
            "1 when the last reload (SIGHUP) of the configuration took, 0 when it was refused and the configuration before it stays in force.",
            Kind::Gauge,
        );
        ok.push("", Vec::new(), if self.ok() { 1.0 } else { 0.0 });
        let mut at = Family::new(
            LAST_RELOAD_SUCCESS,
            "Time of the start or of the last reload that took, in seconds since the epoch.",
            Kind::Gauge,
        );
        at.push("", Vec::new(), self.at_ms.load(Relaxed) as f64 / 1000.0);
        out.push(ok);
        out.push(at);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
