//! What the writer tests share: a writer and its options as the tests set them, fast
//! retries, a test snapshot, the writers' own counters, and the received samples per series.

use std::collections::BTreeMap;
use std::time::Duration;

use ollama_tap::config::{Writer, WriterOpt};
use ollama_tap::push::proto::{Label, TimeSeries};
use ollama_tap::push::{encode_families, RetryPolicy, Writers};
use ollama_tap::{Family, Kind};

pub const SENT: &str = "ollama_tap_remote_write_samples_sent_total";
pub const FAILED: &str = "ollama_tap_remote_write_samples_failed_total";
pub const DROPPED: &str = "ollama_tap_remote_write_samples_dropped_total";
pub const RETRIES: &str = "ollama_tap_remote_write_retries_total";

/// A label set, sorted as the writer sends it.
pub type Labels = Vec<(String, String)>;

/// A writer to `url` that gives up dialing after 1 s.
pub fn writer(url: &str) -> Writer {
    Writer {
        dial_timeout: Duration::from_secs(1),
        max_idle_conns_per_host: 10,
        ..Writer::new(url)
    }
}

/// `batch` samples a request, room for `chan_size` in the memory queue.
pub fn opt(batch: usize, chan_size: usize) -> WriterOpt {
    WriterOpt {
        batch,
        chan_size,
        ..WriterOpt::default()
    }
}

/// Retries after 5–10 ms, then up to 100 ms: fast tests, same code path as production.
pub fn fast() -> RetryPolicy {
    RetryPolicy {
        min: Duration::from_millis(10),
        max: Duration::from_millis(100),
    }
}

/// One snapshot: `n` series `ollama_tap_test{i="0".."n-1"}`, all at `ts`, value `ts`.
pub fn snapshot(ts: i64, n: usize) -> Vec<TimeSeries> {
    let mut f = Family::new("ollama_tap_test", "Test.", Kind::Gauge);
    for i in 0..n {
        f.push("", vec![("i".to_owned(), i.to_string())], ts as f64);
    }
    encode_families(&[f], ts)
}

/// Timestamps per label set, in arrival order.
pub fn stamps_by_series(series: &[TimeSeries]) -> BTreeMap<Labels, Vec<i64>> {
    let mut out: BTreeMap<Labels, Vec<i64>> = BTreeMap::new();
    for ts in series {
        let key = ts
            .labels
            .iter()
            .map(|l: &Label| (l.name.clone(), l.value.clone()))
            .collect();
        out.entry(key)
            .or_default()
            .extend(ts.samples.iter().map(|s| s.timestamp));
    }
    out
}

/// The value of the first series of `name` with `suffix` (single-writer tests).
pub fn metric(w: &Writers, name: &str, suffix: &str) -> f64 {
    let families = w.families();
    let family = families.iter().find(|f| f.name == name).expect(name);
    family
        .series
        .iter()
        .find(|s| s.suffix == suffix)
        .unwrap_or_else(|| panic!("{name}{suffix}"))
        .value
}
