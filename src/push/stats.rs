//! The push's own metrics, per writer URL: counters, the queue gauge, the time since the last
//! success and the request-duration histogram, rendered as snapshot [`Family`]s.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::snapshot::{Family, Kind};

/// Upper bounds of the request-duration histogram, in seconds.
pub(crate) const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) const SAMPLES_SENT: &str = "ollama_tap_remote_write_samples_sent_total";
pub(crate) const SAMPLES_FAILED: &str = "ollama_tap_remote_write_samples_failed_total";
pub(crate) const SAMPLES_DROPPED: &str = "ollama_tap_remote_write_samples_dropped_total";
pub(crate) const RETRIES: &str = "ollama_tap_remote_write_retries_total";
pub(crate) const QUEUE_SAMPLES: &str = "ollama_tap_remote_write_queue_samples";
pub(crate) const QUEUE_BYTES: &str = "ollama_tap_remote_write_queue_bytes";
pub(crate) const SINCE_LAST_SUCCESS: &str = "ollama_tap_remote_write_seconds_since_last_success";
pub(crate) const REQUEST_DURATION: &str = "ollama_tap_remote_write_request_duration_seconds";

/// Why samples were dropped before they could be sent: the `reason` label of
/// [`SAMPLES_DROPPED`]. A memory queue drops only for `queue_full`, a disk queue for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The memory queue was full (`chan_size`): the oldest samples made room.
    QueueFull,
    /// The disk queue reached `queue_max_mb`: its oldest segment made room.
    DiskFull,
    /// Older than `queue_max_age` when their turn came.
    TooOld,
    /// In a queue record that did not check out (a crash tore it, or the disk damaged it).
    Corrupt,
    /// In a snapshot that could not be written to the queue directory.
    WriteError,
}

/// One writer's counters and queue gauges, all atomics (so `/metrics` never waits for the
/// queue); the two compound values sit behind a mutex.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    dropped: [AtomicU64; 5],
    /// Samples waiting, the batch in flight included.
    pub(crate) queue_samples: AtomicU64,
    /// Bytes of the queue's files; `None` for a memory queue.
    pub(crate) queue_bytes: Option<AtomicU64>,
    /// The last accepted push, or the writer's start before any.
    last_success: Mutex<Instant>,
    duration: Mutex<Histogram>,
}

/// Per-bucket (not cumulative) counts, sum and count.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// What [`families`] needs from one writer.
pub(crate) struct View<'a> {
    pub(crate) url: &'a str,
    pub(crate) stats: &'a Stats,
}

// === impl DropReason ===

impl DropReason {
    const MEMORY: [DropReason; 1] = [DropReason::QueueFull];
    const DISK: [DropReason; 4] = [
        DropReason::DiskFull,
        DropReason::TooOld,
        DropReason::Corrupt,
        DropReason::WriteError,
    ];

    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::DiskFull => "disk_full",
            DropReason::TooOld => "too_old",
            DropReason::Corrupt => "corrupt",
            DropReason::WriteError => "write_error",
        }
    }
}

// === impl Stats ===

impl Stats {
    /// A memory queue's stats.
    pub(crate) fn new() -> Stats {
        Stats {
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: Default::default(),
            queue_samples: AtomicU64::new(0),
            queue_bytes: None,
            last_success: Mutex::new(Instant::now()),
            duration: Mutex::new(Histogram::default()),
        }
    }

    /// A disk queue's stats (with the bytes gauge).
    pub(crate) fn on_disk() -> Stats {
        Stats {
            queue_bytes: Some(AtomicU64::new(0)),
            ..Stats::new()
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    /// Counts `n` samples dropped for `reason`.
    pub(crate) fn drop_samples(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped[reason as usize].fetch_add(n, Relaxed);
        }
    }

    /// Samples dropped so far, for every reason.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sets the queue gauges.
    pub(crate) fn set_queue(&self, samples: usize, bytes: u64) {
        self.queue_samples.store(samples as u64, Relaxed);
        if let Some(b) = &self.queue_bytes {
            b.store(bytes, Relaxed);
        }
    }

    pub(crate) fn mark_success(&self) {
        *self.last_success.lock() = Instant::now();
    }

    /// Records one request's duration (answered or not).
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut h = self.duration.lock();
        if let Some(i) = DURATION_BUCKETS.iter().position(|le| secs <= *le) {
            h.buckets[i] += 1;
        }
        h.sum += secs;
        h.count += 1;
    }

    fn since_last_success(&self) -> f64 {
        self.last_success.lock().elapsed().as_secs_f64()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// The seven families, one series (or one histogram) per writer, labelled `url`.
pub(crate) fn families(writers: &[View<'_>]) -> Vec<Family> {
    if writers.is_empty() {
        return Vec::new();
    }
    let mut sent = Family::new(
        SAMPLES_SENT,
        "Samples accepted by the receiver.",
        Kind::Counter,
    );
    let mut failed = Family::new(
        SAMPLES_FAILED,
        "Samples in batches rejected for good (4xx other than 429) and dropped.",
        Kind::Counter,
    );
    let mut dropped = Family::new(
        SAMPLES_DROPPED,
        "Samples dropped before they could be sent, by reason (queue_full, disk_full, too_old, corrupt, write_error).",
        Kind::Counter,
    );
    let mut retries = Family::new(
        RETRIES,
        "Push requests that failed (5xx, 429, connection error, timeout) and were retried.",
        Kind::Counter,
    );
    let mut queue = Family::new(QUEUE_SAMPLES, "Samples waiting to be sent.", Kind::Gauge);
    let mut queue_bytes = Family::new(
        QUEUE_BYTES,
        "Bytes of the writer's disk queue (writers with a queue_dir only).",
        Kind::Gauge,
    );
    let mut since = Family::new(
        SINCE_LAST_SUCCESS,
        "Seconds since the last accepted push (since the writer started, before any).",
        Kind::Gauge,
    );
    let mut duration = Family::new(
        REQUEST_DURATION,
        "Duration of push requests, answered or not.",
        Kind::Histogram,
    );
    for w in writers {
        let url = || vec![("url".to_owned(), w.url.to_owned())];
        let count = |c: &AtomicU64| c.load(Relaxed) as f64;
        sent.push("", url(), count(&w.stats.sent));
        failed.push("", url(), count(&w.stats.failed));
        let reasons: &[DropReason] = match w.stats.queue_bytes {
            None => &DropReason::MEMORY,
            Some(_) => &DropReason::DISK,
        };
        for &reason in reasons {
            let labels = vec![
                ("reason".to_owned(), reason.label().to_owned()),
                url().remove(0),
            ];
            dropped.push("", labels, count(&w.stats.dropped[reason as usize]));
        }
        retries.push("", url(), count(&w.stats.retries));
        queue.push("", url(), count(&w.stats.queue_samples));
        if let Some(bytes) = &w.stats.queue_bytes {
            queue_bytes.push("", url(), count(bytes));
        }
        since.push("", url(), w.stats.since_last_success());
        let h = w.stats.duration.lock();
        let mut cumulative = 0;
        for (le, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let labels = vec![("le".to_owned(), le.to_string()), url().remove(0)];
            duration.push("_bucket", labels, cumulative as f64);
        }
        let inf = vec![("le".to_owned(), "+Inf".to_owned()), url().remove(0)];
        duration.push("_bucket", inf, h.count as f64);
        duration.push("_sum", url(), h.sum);
        duration.push("_count", url(), h.count as f64);
    }
    let mut all = vec![sent, failed, dropped, retries, queue, since, duration];
    if !queue_bytes.series.is_empty() {
        all.insert(5, queue_bytes);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(families: &[Family], name: &str, suffix: &str, le: Option<&str>) -> f64 {
        let f = families.iter().find(|f| f.name == name).unwrap();
        let s = f
            .series
            .iter()
            .find(|s| {
                s.suffix == suffix
                    && le.is_none_or(|le| s.labels.iter().any(|(k, v)| k == "le" && v == le))
            })
            .unwrap();
        s.value
    }

    #[test]
    fn histogram_buckets_are_cumulative_up_to_inf() {
        let stats = Stats::new();
        for ms in [1, 7, 7, 300, 20_000] {
            stats.observe(Duration::from_millis(ms));
        }
        stats.set_queue(3, 0);
        let view = [View {
            url: "http://h/w",
            stats: &stats,
        }];
        let fams = families(&view);
        let le = |b| value(&fams, REQUEST_DURATION, "_bucket", Some(b));
        assert_eq!(le("0.005"), 1.0);
        assert_eq!(le("0.01"), 3.0);
        assert_eq!(le("0.25"), 3.0);
        assert_eq!(le("0.5"), 4.0);
        assert_eq!(le("10"), 4.0);
        assert_eq!(le("+Inf"), 5.0);
        assert_eq!(value(&fams, REQUEST_DURATION, "_count", None), 5.0);
        assert!((value(&fams, REQUEST_DURATION, "_sum", None) - 20.315).abs() < 1e-9);
        assert_eq!(value(&fams, QUEUE_SAMPLES, "", None), 3.0);
    }

    #[test]
    fn every_series_is_labelled_with_its_writers_url_and_le_sorts_first() {
        let (a, b) = (Stats::new(), Stats::new());
        Stats::add(&a.sent, 4);
        Stats::add(&b.sent, 9);
        let view = [
            View {
                url: "http://a/w",
                stats: &a,
            },
            View {
                url: "http://b/w",
                stats: &b,
            },
        ];
        let fams = families(&view);
        let names: Vec<&str> = fams.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                SAMPLES_SENT,
                SAMPLES_FAILED,
                SAMPLES_DROPPED,
                RETRIES,
                QUEUE_SAMPLES,
                SINCE_LAST_SUCCESS,
                REQUEST_DURATION
            ]
        );
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let urls = ["http://a/w", "http://b/w"];
        for f in &fams[..6] {
            if f.name == SAMPLES_DROPPED {
                continue;
            }
            let got: Vec<_> = f
                .series
                .iter()
                .map(|s| (s.suffix, s.labels.clone()))
                .collect();
            let want: Vec<_> = urls.iter().map(|u| ("", vec![pair("url", u)])).collect();
            assert_eq!(got, want, "{}", f.name);
        }
        let got: Vec<_> = fams[6]
            .series
            .iter()
            .map(|s| (s.suffix, s.labels.clone()))
            .collect();
        let mut want = Vec::new();
        for u in urls {
            let les = DURATION_BUCKETS.iter().map(|b| b.to_string());
            for le in les.chain(["+Inf".to_owned()]) {
                want.push(("_bucket", vec![pair("le", &le), pair("url", u)]));
            }
            want.push(("_sum", vec![pair("url", u)]));
            want.push(("_count", vec![pair("url", u)]));
        }
        assert_eq!(got, want);
        let sent: Vec<f64> = fams[0].series.iter().map(|s| s.value).collect();
        assert_eq!(sent, [4.0, 9.0]);
    }

    #[test]
    fn drops_are_counted_by_reason_and_a_disk_queue_has_its_bytes_gauge() {
        let (memory, disk) = (Stats::new(), Stats::on_disk());
        memory.drop_samples(DropReason::QueueFull, 5);
        disk.drop_samples(DropReason::TooOld, 2);
        disk.drop_samples(DropReason::Corrupt, 3);
        disk.set_queue(7, 4096);
        let view = [
            View {
                url: "http://m/w",
                stats: &memory,
            },
            View {
                url: "http://d/w",
                stats: &disk,
            },
        ];
        let fams = families(&view);
        let dropped = fams.iter().find(|f| f.name == SAMPLES_DROPPED).unwrap();
        let got: Vec<(String, f64)> = dropped
            .series
            .iter()
            .map(|s| (format!("{}@{}", s.labels[0].1, s.labels[1].1), s.value))
            .collect();
        let want = [
            ("queue_full@http://m/w", 5.0),
            ("disk_full@http://d/w", 0.0),
            ("too_old@http://d/w", 2.0),
            ("corrupt@http://d/w", 3.0),
            ("write_error@http://d/w", 0.0),
        ];
        let want: Vec<(String, f64)> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(got, want);
        assert_eq!(disk.dropped(), 5);
        let bytes = fams.iter().find(|f| f.name == QUEUE_BYTES).unwrap();
        assert_eq!(bytes.series.len(), 1, "only the disk writer has the gauge");
        assert_eq!(bytes.series[0].value, 4096.0);
        assert_eq!(value(&fams, QUEUE_SAMPLES, "", None), 0.0);
        let memory_only = families(&view[..1]);
        assert!(memory_only.iter().all(|f| f.name != QUEUE_BYTES));
    }

    #[test]
    fn no_writers_no_families() {
        assert!(families(&[]).is_empty());
    }
}
