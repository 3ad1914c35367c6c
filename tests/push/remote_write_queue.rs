//! Remote-write push, driven through `Writers` against a local receiver: what arrives, in which
//! order, and what a writer does when its receiver rejects, throttles, hangs or is down.

use crate::common;

use std::time::Duration;

use common::receiver::{Receiver, Script};
use common::{wait_until, WAIT};
use ollama_tap::push::proto::{TimeSeries, WriteRequest};
use ollama_tap::push::{compress, encode_families, RetryPolicy, Writers};
use ollama_tap::{Family, Kind};

use crate::writers::{
    fast, metric, opt, snapshot, stamps_by_series, writer, DROPPED, FAILED, RETRIES, SENT,
};

const QUEUE: &str = "ollama_tap_remote_write_queue_samples";
const SINCE: &str = "ollama_tap_remote_write_seconds_since_last_success";
const DURATION: &str = "ollama_tap_remote_write_request_duration_seconds";

/// Labels sorted by name (so no name twice), `__name__` present, no empty value, names valid
/// for Prometheus (`[a-zA-Z_][a-zA-Z0-9_]*`; metric names may also hold `:`).
fn assert_valid(ts: &TimeSeries) {
    let valid = |name: &str, colon: bool| {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        name.chars().all(ok) && !name.starts_with(|c: char| c.is_ascii_digit()) && !name.is_empty()
    };
    let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert!(
        valid(ts.label("__name__").expect("__name__"), true),
        "{names:?}"
    );
    for l in &ts.labels {
        assert!(valid(&l.name, false) && !l.value.is_empty(), "{l:?}");
    }
}

#[tokio::test]
async fn sends_sorted_sanitised_series_that_decode_back_unchanged() {
    let rx = Receiver::start(Script::Always(204)).await;
    let w = Writers::start_with(&[writer(&rx.url())], &opt(100, 1000), fast()).unwrap();
    let mut requests = Family::new("ollama_requests", "Requests.", Kind::Counter);
    let labels = [
        ("model", "llama3"),
        ("agent_hostname", "h1"),
        ("empty", ""),
        ("bad-name.x", "v"),
        ("bad_name_x", "duplicate after sanitising"),
        ("9th", "n"),
    ];
    let labels = labels.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec();
    requests.push("_total", labels, 3.0);
    let mut weird = Family::new("ollama.weird-name", "Weird.", Kind::Gauge);
    weird.push("", Vec::new(), -1.5);
    let sent = encode_families(&[requests, weird], 1_700_000_000_000);
    w.enqueue(sent.clone());

    let got = rx.wait_for_accepted_series(2, WAIT).await;
    assert_eq!(got, sent);
    let pairs: Vec<(&str, &str)> = got[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("_9th", "n"),
            ("__name__", "ollama_requests_total"),
            ("agent_hostname", "h1"),
            ("bad_name_x", "v"),
            ("model", "llama3"),
        ]
    );
    assert_eq!(got[1].label("__name__"), Some("ollama_weird_name"));
    for ts in &got {
        assert_valid(ts);
        assert_eq!(ts.samples.len(), 1);
        assert_eq!(ts.samples[0].timestamp, 1_700_000_000_000);
    }
}

#[tokio::test]
async fn retries_5xx_until_accepted_in_order_without_gaps_or_duplicates() {
    let rx = Receiver::start(Script::Sequence(vec![503, 503, 503])).await;
    let w = Writers::start_with(&[writer(&rx.url())], &opt(4, 1000), fast()).unwrap();
    w.enqueue(snapshot(1000, 3));
    rx.wait_for_requests(1, WAIT).await;
    for ts in 2..=10 {
        w.enqueue(snapshot(ts * 1000, 3));
    }

    let got = rx.wait_for_accepted_series(30, WAIT).await;
    assert_eq!(got.len(), 30, "no duplicate");
    let want: Vec<i64> = (1..=10).map(|t| t * 1000).collect();
    let by_series = stamps_by_series(&got);
    assert_eq!(by_series.len(), 3);
    for (labels, stamps) in by_series {
        assert_eq!(stamps, want, "{labels:?}: in order, no gap, no duplicate");
    }
    let requests = rx.received();
    assert_eq!(
        requests[..3].iter().map(|r| r.status).collect::<Vec<_>>(),
        [503; 3]
    );
    for retry in &requests[1..4] {
        assert_eq!(retry.series[0], requests[0].series[0], "oldest first again");
    }
    wait_until("counters", || metric(&w, SENT, "") == 30.0).await;
    assert_eq!(metric(&w, RETRIES, ""), 3.0);
    assert_eq!(metric(&w, FAILED, ""), 0.0);
}

#[tokio::test]
async fn drops_a_400_batch_once_and_later_batches_flow() {
    let rx = Receiver::start(Script::Sequence(vec![400])).await;
    let w = Writers::start_with(&[writer(&rx.url())], &opt(3, 1000), fast()).unwrap();
    w.enqueue(snapshot(1, 3));
    rx.wait_for_requests(1, WAIT).await;
    w.enqueue(snapshot(2, 3));
    w.enqueue(snapshot(3, 3));

    let got = rx.wait_for_accepted_series(6, WAIT).await;
    wait_until("counters", || metric(&w, SENT, "") == 6.0).await;
    // One more batch behind them: the queue is FIFO, so a resend of the rejected batch would
    // come before it.
    w.enqueue(snapshot(4, 3));
    rx.wait_for_accepted_series(9, WAIT).await;
    let requests = rx.received();
    assert_eq!(requests.len(), 4, "the rejected batch is never sent again");
    assert_eq!(requests[0].status, 400);
    assert!(requests[0]
        .series
        .iter()
        .all(|s| s.samples[0].timestamp == 1));
    assert!(got.iter().all(|s| s.samples[0].timestamp != 1));
    assert_eq!(metric(&w, FAILED, ""), 3.0);
    assert_eq!(metric(&w, RETRIES, ""), 0.0);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let rx = Receiver::start(Script::RetryAfter429 { secs: 1, n: 1 }).await;
    let policy = RetryPolicy {
        min: Duration::from_millis(10),
        max: Duration::from_secs(5),
    };
    let w = Writers::start_with(&[writer(&rx.url())], &opt(10, 100), policy).unwrap();
    w.enqueue(snapshot(7, 2));

    let requests = rx.wait_for_requests(2, WAIT).await;
    assert_eq!((requests[0].status, requests[1].status), (429, 204));
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(requests[1].series, requests[0].series);
}

#[tokio::test]
async fn an_outage_longer_than_the_buffer_keeps_the_newest_and_counts_the_overflow() {
    let rx = Receiver::start(Script::Always(204)).await;
    rx.stop().await;
    // One try per second: the queue is filled between two tries, never during one.
    let policy = RetryPolicy {
        min: Duration::from_secs(1),
        max: Duration::from_secs(1),
    };
    let w = Writers::start_with(&[writer(&rx.url())], &opt(6, 6), policy).unwrap();
    w.enqueue(snapshot(1, 2));
    wait_until("a failed try", || metric(&w, RETRIES, "") >= 1.0).await;
    for ts in 2..=20 {
        w.enqueue(snapshot(ts, 2));
        assert!(
            metric(&w, QUEUE, "") <= 6.0,
            "over capacity after snapshot {ts}"
        );
    }
    assert_eq!(metric(&w, QUEUE, ""), 6.0);
    assert_eq!(metric(&w, DROPPED, ""), 40.0 - 6.0, "exactly the overflow");

    rx.restart().await;
    let got = rx.wait_for_accepted_series(6, WAIT).await;
    for (labels, stamps) in stamps_by_series(&got) {
        assert_eq!(stamps, [18, 19, 20], "{labels:?}: the newest samples");
    }
    wait_until("the queue drained", || metric(&w, SENT, "") == 6.0).await;
    assert_eq!(metric(&w, QUEUE, ""), 0.0);
}

#[tokio::test]
async fn custom_headers_cannot_override_the_reserved_four() {
    let rx = Receiver::start(Script::Always(204)).await;
    let mut wr = writer(&rx.url());
    wr.headers = [
        ("Content-Type", "text/plain"),
        ("User-Agent", "evil/1.0"),
        ("x-prometheus-remote-write-version", "2.0.0"),
        ("CONTENT-ENCODING", "gzip"),
        ("X-Scope-OrgID", "tenant-1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let w = Writers::start_with(&[wr], &opt(10, 100), fast()).unwrap();
    w.enqueue(snapshot(1, 1));

    // The receiver checks the reserved four (exactly one value each) on every request.
    let requests = rx.wait_for_requests(1, WAIT).await;
    assert_eq!(requests[0].headers["x-scope-orgid"], "tenant-1");
    assert_eq!(requests[0].basic_auth, None);
}

#[tokio::test]
async fn sends_basic_auth_only_when_a_user_is_set() {
    let (with, without) = tokio::join!(
        Receiver::start(Script::Always(204)),
        Receiver::start(Script::Always(204))
    );
    let mut a = writer(&with.url());
    a.basic_auth_user = "alice".into();
    a.basic_auth_pass = "s3cret:x".into();
    let mut b = writer(&without.url());
    b.basic_auth_pass = "ignored without a user".into();
    let w = Writers::start_with(&[a, b], &opt(10, 100), fast()).unwrap();
    w.enqueue(snapshot(1, 1));

    let got = with.wait_for_requests(1, WAIT).await;
    let auth = ("alice".to_owned(), "s3cret:x".to_owned());
    assert_eq!(got[0].basic_auth, Some(auth));
    let got = without.wait_for_requests(1, WAIT).await;
    assert!(!got[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn self_metrics_count_per_url_without_userinfo() {
    let rx = Receiver::start(Script::Sequence(vec![500, 400])).await;
    let url = format!("http://bob:pw@{}/api/v1/write", rx.addr());
    let w = Writers::start_with(&[writer(&url)], &opt(3, 100), fast()).unwrap();
    w.enqueue(snapshot(1, 3));
    rx.wait_for_requests(2, WAIT).await;
    w.enqueue(snapshot(2, 3));
    rx.wait_for_accepted_series(3, WAIT).await;
    wait_until("counters", || metric(&w, SENT, "") == 3.0).await;

    assert_eq!(metric(&w, FAILED, ""), 3.0);
    assert_eq!(metric(&w, RETRIES, ""), 1.0);
    assert_eq!(metric(&w, DROPPED, ""), 0.0);
    assert_eq!(metric(&w, QUEUE, ""), 0.0);
    assert!(metric(&w, SINCE, "").is_finite());
    assert_eq!(metric(&w, DURATION, "_count"), 3.0);
    let families = w.families();
    assert_eq!(families.len(), 7);
    assert_eq!(
        w.metrics().families().len(),
        7,
        "the handle sees the same families"
    );
    for family in &families {
        for s in &family.series {
            let url_label = s.labels.iter().find(|(k, _)| k == "url").unwrap();
            assert_eq!(url_label.1, rx.url(), "{}", family.name);
        }
    }
    let buckets: Vec<(&str, f64)> = families[6]
        .series
        .iter()
        .filter(|s| s.suffix == "_bucket")
        .map(|s| (s.labels[0].1.as_str(), s.value))
        .collect();
    assert_eq!(buckets.len(), 12);
    assert_eq!(buckets[0].0, "0.005");
    assert_eq!(buckets[11], ("+Inf", 3.0));
    assert!(buckets.windows(2).all(|b| b[0].1 <= b[1].1), "cumulative");
}

#[tokio::test]
async fn flush_delivers_what_is_queued_when_the_receiver_is_up() {
    let rx = Receiver::start(Script::FailFirst { status: 502, n: 1 }).await;
    let w = Writers::start_with(&[writer(&rx.url())], &opt(4, 1000), fast()).unwrap();
    for ts in 1..=5 {
        w.enqueue(snapshot(ts, 3));
    }
    assert_eq!(w.flush(WAIT).await, 0);
    assert_eq!(rx.accepted_series().len(), 15);
}

#[tokio::test]
async fn flush_returns_by_the_deadline_when_the_receiver_is_down() {
    let rx = Receiver::start(Script::Always(204)).await;
    rx.stop().await;
    let w = Writers::start(&[writer(&rx.url())], &opt(4, 1000)).unwrap();
    w.enqueue(snapshot(1, 3));
    w.enqueue(snapshot(2, 3));
    let left = tokio::time::timeout(WAIT, w.flush(Duration::from_millis(200))).await;
    assert_eq!(left.expect("flush kept its deadline"), 6);
}

#[tokio::test]
async fn flush_abandons_a_hanging_request_at_the_deadline() {
    let rx = Receiver::start(Script::Hang).await;
    let mut wr = writer(&rx.url());
    wr.timeout = Duration::from_secs(60);
    let w = Writers::start_with(&[wr], &opt(10, 100), fast()).unwrap();
    w.enqueue(snapshot(1, 3));
    rx.wait_for_requests(1, WAIT).await;
    let left = tokio::time::timeout(WAIT, w.flush(Duration::from_millis(100))).await;
    assert_eq!(
        left.expect("flush kept its deadline"),
        3,
        "in flight = unsent"
    );
}

#[tokio::test]
async fn a_hanging_writer_does_not_delay_another() {
    let (stuck, ok) = tokio::join!(
        Receiver::start(Script::Hang),
        Receiver::start(Script::Always(204))
    );
    let mut hanging = writer(&stuck.url());
    hanging.timeout = Duration::from_secs(60);
    let w = Writers::start_with(&[hanging, writer(&ok.url())], &opt(3, 100), fast()).unwrap();
    for ts in 1..=5 {
        w.enqueue(snapshot(ts, 3));
        ok.wait_for_requests(ts as usize, WAIT).await;
    }
    let got = ok.accepted_series();
    assert_eq!(got.len(), 15);
    for (_, stamps) in stamps_by_series(&got) {
        assert_eq!(stamps, [1, 2, 3, 4, 5]);
    }
    assert_eq!(
        stuck.received().len(),
        1,
        "still waiting on its first request"
    );
}

#[tokio::test]
async fn no_writers_means_nothing_to_do() {
    let w = Writers::start(&[], &opt(10, 100)).unwrap();
    assert!(w.is_empty());
    w.enqueue(snapshot(1, 3));
    assert!(w.families().is_empty());
    assert_eq!(w.flush(Duration::from_millis(10)).await, 0);
}

#[tokio::test]
async fn start_errors_name_the_writer_field_and_url() {
    let mut bad = writer("https://carol:pw@example.invalid/write");
    bad.use_tls = true;
    bad.tls_ca = "/nonexistent/ollama-tap-ca.pem".into();
    let err = Writers::start(&[writer("http://127.0.0.1:9/w"), bad], &opt(10, 100))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("writers[1].tls_ca: "), "{err}");
    assert!(err.contains("https://example.invalid/write"), "{err}");
    assert!(err.contains("/nonexistent/ollama-tap-ca.pem"), "{err}");
    assert!(!err.contains("pw@") && !err.contains('\n'), "{err}");
}

/// Python's `protobuf` + `cramjam`, message classes built from proto/remote.proto, decode a
/// body the agent encoded, and re-encode it to the same bytes. Needs
/// `pip install protobuf cramjam` (scripts/test.sh installs them); fails without.
#[test]
fn python_decodes_an_agent_body_to_the_same_series() {
    let mut f = Family::new("ollama_values", "Values.", Kind::Gauge);
    let values = [0.0, -2.5, 1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
    for (i, v) in values.into_iter().enumerate() {
        let labels = vec![
            ("i".to_owned(), i.to_string()),
            ("text".to_owned(), "ünïcødé \"quoted\" \\ 🦙".to_owned()),
        ];
        f.push("", labels, v);
    }
    let series = encode_families(&[f], 1_700_000_123_456);
    let body = compress(&WriteRequest {
        timeseries: series.clone(),
    });
    let path = std::env::temp_dir().join(format!("ollama-tap-rw-{}.bin", std::process::id()));
    std::fs::write(&path, &body).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/decode_remote_write.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "decode_remote_write.py failed (pip install protobuf cramjam?): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["reencoded_equal"], true,
        "same bytes from the reference encoder"
    );
    let decoded = json["timeseries"].as_array().unwrap();
    assert_eq!(decoded.len(), series.len());
    for (ts, py) in series.iter().zip(decoded) {
        let labels: Vec<(String, String)> = ts
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let py_labels: Vec<(String, String)> =
            serde_json::from_value(py["labels"].clone()).unwrap();
        assert_eq!(py_labels, labels);
        let sample = &py["samples"][0];
        assert_eq!(sample["timestamp"], 1_700_000_123_456_i64);
        let v = ts.samples[0].value;
        let want = match v {
            v if v.is_nan() => serde_json::json!("NaN"),
            f64::INFINITY => serde_json::json!("+Inf"),
            f64::NEG_INFINITY => serde_json::json!("-Inf"),
            v => serde_json::json!(v),
        };
        assert_eq!(sample["value"], want);
    }
}
