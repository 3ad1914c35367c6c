//! The push end to end: the agent (in process, or the real binary) in front of the fake
//! Ollama pushes to a test receiver that decodes snappy + protobuf and checks the headers.

use crate::common;

use std::collections::BTreeMap;

use common::fake_ollama::FakeOllama;
use common::receiver::{Receiver, Script};
use common::{Binary, ConfDir, InProcess};
use ollama_tap::push::proto::TimeSeries;

/// `name{k="v",...}` → (timestamp, value), the latest sample of every series received.
fn latest(series: &[TimeSeries]) -> BTreeMap<String, (i64, f64)> {
    let mut out = BTreeMap::new();
    for ts in series {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value.clone())
            .unwrap();
        let labels: Vec<String> = ts
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        let key = if labels.is_empty() {
            name
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        for s in &ts.samples {
            let e = out.entry(key.clone()).or_insert((s.timestamp, s.value));
            if s.timestamp >= e.0 {
                *e = (s.timestamp, s.value);
            }
        }
    }
    out
}

/// `/metrics` text → `name{labels}` → value, for the lines of the `ollama_` families.
fn exposed(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("ollama_") && !l.starts_with("ollama_tap_"))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        })
        .collect()
}

/// Waits until a series named `name` was accepted; returns all accepted series.
async fn until_pushed(receiver: &Receiver, name: &str) -> Vec<TimeSeries> {
    let named = |ts: &TimeSeries| {
        ts.labels
            .iter()
            .any(|l| l.name == "__name__" && l.value == name)
    };
    common::wait_until(&format!("{name} pushed"), || {
        receiver.accepted_series().iter().any(named)
    })
    .await;
    receiver.accepted_series()
}

async fn generate(url: &str, model: &str, n: usize) {
    for _ in 0..n {
        let res = common::generate(url, model, "three little words", false).await;
        assert_eq!(res.status(), 200);
        res.text().await.unwrap();
    }
}

fn conf(receiver: &Receiver, backend: &str, global: &str, instance: &str, listen: &str) -> ConfDir {
    ConfDir::new(
        &format!("[global]\ninterval = 1\n{global}\n[[writers]]\nurl = \"{}\"\n", receiver.url()),
        &format!("[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"{listen}\"\ninterval = 1\n{instance}\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_values_equal_metrics() {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(conf(
        &receiver,
        &fake.url(),
        "hostname = \"box\"",
        "",
        "127.0.0.1:0",
    ))
    .await;
    generate(&agent.url(), "llama3.2", 3).await;
    generate(&agent.url(), "qwen2.5:0.5b", 2).await;
    let metrics = agent.metrics().await;
    let want = exposed(&metrics.0);
    assert!(want.len() > 20, "{want:?}");
    // Wait for a push that happened after the traffic, then compare everything.
    let key = r#"ollama_requests_total{agent_hostname="box",model="qwen2.5:0.5b"}"#;
    common::wait_until("a push after the traffic", || {
        latest(&receiver.accepted_series()).get(key).map(|v| v.1) == Some(2.0)
    })
    .await;
    let got = latest(&receiver.accepted_series());
    for (series, value) in &want {
        let pushed = got
            .get(series)
            .unwrap_or_else(|| panic!("{series} was not pushed; got {got:#?}"));
        assert_eq!(pushed.1, *value, "{series}");
    }
    // The push's own series are pushed too, labelled like the rest.
    assert!(
        got.keys()
            .any(|k| k
                .starts_with("ollama_tap_remote_write_samples_sent_total{agent_hostname=\"box\"")),
        "{got:#?}"
    );
    // Every sample is stamped in ms since the epoch, before this test read it: after
    // 2020-09-13 in ms (not seconds), and not in the future (not microseconds).
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let received = receiver.received();
    assert!(!received.is_empty());
    for req in received {
        let stamps: std::collections::BTreeSet<i64> = req
            .series
            .iter()
            .flat_map(|s| s.samples.iter().map(|x| x.timestamp))
            .collect();
        assert!(
            stamps
                .iter()
                .all(|t| (1_600_000_000_000..=now_ms).contains(t)),
            "{stamps:?} vs now {now_ms}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_follow_categraf_rules() {
    let receiver = Receiver::start(Script::Always(200)).await;
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(conf(
        &receiver,
        &fake.url(),
        "hostname = \"box\"\n[global.labels]\nregion = \"eu\"\nservice = \"global-loses\"\nempty = \"\"",
        "[instances.labels]\nservice = \"ollama\"\nmodel = \"-\"",
        "127.0.0.1:0",
    ))
    .await;
    generate(&agent.url(), "llama3.2", 1).await;
    let series = until_pushed(&receiver, "ollama_requests_total").await;
    let (mut checked, mut own) = (0, 0);
    for ts in series.iter().filter(|ts| {
        ts.labels
            .iter()
            .any(|l| l.name == "__name__" && l.value.starts_with("ollama_"))
    }) {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted, no duplicates");
        let get = |n: &str| {
            ts.labels
                .iter()
                .find(|l| l.name == n)
                .map(|l| l.value.as_str())
        };
        let name = get("__name__").unwrap();
        if name.starts_with("ollama_tap_remote_write_") || name.starts_with("ollama_tap_config_") {
            // The agent's own series belong to no instance: global labels and hostname only.
            assert_eq!(
                (get("region"), get("agent_hostname")),
                (Some("eu"), Some("box"))
            );
            assert_eq!(get("service"), Some("global-loses"), "{ts:?}");
            assert_eq!(get("empty"), None, "empty values are dropped");
            own += 1;
            continue;
        }
        assert_eq!(
            get("service"),
            Some("ollama"),
            "instance labels win over global ones"
        );
        assert_eq!(
            get("region"),
            Some("eu"),
            "global labels are added where absent"
        );
        assert_eq!(get("agent_hostname"), Some("box"));
        assert_eq!(get("model"), None, "\"-\" deletes the label");
        assert_eq!(get("empty"), None, "empty values are dropped");
        checked += 1;
    }
    assert!(checked > 0 && own > 0, "{checked} {own}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omit_hostname_leaves_agent_hostname_out() {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    let _agent = InProcess::start(conf(
        &receiver,
        &fake.url(),
        "omit_hostname = true",
        "",
        "127.0.0.1:0",
    ))
    .await;
    let series = until_pushed(&receiver, "ollama_up").await;
    assert!(!series.is_empty());
    for ts in &series {
        assert!(
            ts.labels.iter().all(|l| l.name != "agent_hostname"),
            "{ts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_writer_catches_up_in_order_without_gaps_or_duplicates() {
    let receiver = Receiver::start(Script::FailFirst { status: 503, n: 3 }).await;
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(conf(&receiver, &fake.url(), "", "", "127.0.0.1:0")).await;
    generate(&agent.url(), "llama3.2", 5).await;
    receiver.wait_for_requests(5, common::WAIT).await;
    let key = |ts: &TimeSeries| {
        let labels: Vec<String> = ts
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        format!("{} @{}", labels.join(","), ts.samples[0].timestamp)
    };
    let received = receiver.received();
    let accepted: Vec<String> = receiver.accepted_series().iter().map(key).collect();
    let unique: std::collections::BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "no sample is accepted twice");
    // No gap: everything the receiver refused was delivered later.
    let refused: Vec<String> = received
        .iter()
        .filter(|r| r.status == 503)
        .flat_map(|r| r.series.iter().map(key))
        .collect();
    assert_eq!(received.iter().filter(|r| r.status == 503).count(), 3);
    for k in &refused {
        assert!(unique.contains(k), "{k} was refused and never delivered");
    }
    // In order: per series, timestamps only grow.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for ts in receiver.accepted_series() {
        let id: Vec<String> = ts
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        let t = ts.samples[0].timestamp;
        if let Some(prev) = last.insert(id.join(","), t) {
            assert!(t > prev, "out of order: {id:?}");
        }
    }
}

/// SIGTERM: the real binary drains, pushes a final snapshot with the last counts, exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_the_final_counts() {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    let conf = ConfDir::new(
        &format!(
            "[global]\ninterval = 3600\nhostname = \"h\"\n[[writers]]\nurl = \"{}\"\n",
            receiver.url()
        ),
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n",
            fake.url()
        ),
    );
    let mut agent = Binary::start(conf).await;
    // The first push happens at start, before any traffic.
    receiver.wait_for_requests(1, common::WAIT).await;
    generate(&agent.url(), "llama3.2", 4).await;
    let exit = tokio::task::block_in_place(|| agent.terminate());
    assert!(exit.success(), "{exit:?}");
    let got = latest(&receiver.accepted_series());
    assert_eq!(
        got[r#"ollama_requests_total{agent_hostname="h",model="llama3.2:latest"}"#].1, 4.0,
        "{got:#?}"
    );
    assert_eq!(
        got[r#"ollama_tokens_generated_total{agent_hostname="h",model="llama3.2:latest"}"#].1,
        20.0
    );
}

/// A receiver that rejects batch after batch (4xx: never retried) is one warning, not one per
/// interval; the first batch accepted after them is one info line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_rejecting_every_batch_is_logged_once_and_its_recovery_once() {
    let receiver = Receiver::start(Script::FailFirst { status: 400, n: 4 }).await;
    let fake = FakeOllama::start().await;
    let agent = Binary::start(conf(&receiver, &fake.url(), "", "", "127.0.0.1:0")).await;
    // four rejected, then accepted ones
    receiver.wait_for_requests(6, common::WAIT).await;
    let logs = agent.logs();
    let rejected: Vec<&str> = logs.lines().filter(|l| l.contains("rejected")).collect();
    assert_eq!(rejected.len(), 2, "{logs}");
    assert!(
        rejected[0].contains("WARN") && rejected[0].contains("HTTP 400"),
        "{logs}"
    );
    assert!(
        rejected[1].contains("INFO")
            && rejected[1].contains("accepted again")
            && rejected[1].contains("batches=4"),
        "{logs}"
    );
}
