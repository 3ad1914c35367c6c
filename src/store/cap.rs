//! A cap on the distinct values of one label (`model` by `max_models`, `client` by
//! `max_clients`): past it, new values count under the label's overflow value (`other`), and
//! the first time that happens is logged, once.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// The cap of one label, and whether reaching it was logged.
#[derive(Debug)]
pub(super) struct LabelCap {
    max: usize,
    /// The config key (`max_models`), named in the log line.
    key: &'static str,
    /// What the log line says is counted as `other` from now on.
    what: &'static str,
    logged: AtomicBool,
}

impl LabelCap {
    /// `key`: the config key of the cap; `what`: "model names", "clients".
    pub(crate) fn new(max: usize, key: &'static str, what: &'static str) -> Self {
        LabelCap {
            max,
            key,
            what,
            logged: AtomicBool::new(false),
        }
    }

    /// Whether a new value finds the cap full, `named` values (the overflow and other values
    /// of the agent's own not counted) having a label already; the first time, says so once.
    pub(crate) fn is_full(&self, named: usize) -> bool {
        if named < self.max {
            return false;
        }
        if !self.logged.load(Relaxed) && !self.logged.swap(true, Relaxed) {
            tracing::warn!(
                "{} label cap reached ({}={}): further new {} are counted as {}=\"other\"",
                label(self.key),
                self.key,
                self.max,
                self.what,
                label(self.key)
            );
        }
        true
    }
}

/// `max_models` → `model`.
fn label(key: &str) -> &str {
    key.strip_prefix("max_")
        .and_then(|k| k.strip_suffix('s'))
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_from_max_named_values_on() {
        let cap = LabelCap::new(2, "max_models", "model names");
        assert!(!cap.is_full(1));
        assert!(cap.is_full(2));
        assert!(cap.is_full(3));
        assert!(cap.logged.load(Relaxed));
        assert_eq!(label("max_clients"), "client");
    }
}
