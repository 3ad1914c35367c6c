//! The disk queue end to end: the real binary pushes to a receiver that is down, is stopped
//! (SIGTERM) or killed (SIGKILL), starts again on the same `queue_dir`, and the receiver, a
//! test receiver or a real Prometheus, then holds every sample taken before the stop.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::fake_ollama::FakeOllama;
use common::prometheus::Prometheus;
use common::receiver::{Receiver, Script};
use common::{Binary, ConfDir, Metrics};
use ollama_tap::push::proto::TimeSeries;

const QUEUED: &str = "ollama_tap_remote_write_queue_samples";
const DROPPED: &str = "ollama_tap_remote_write_samples_dropped_total";
const REQUESTS: &str = "ollama_requests_total";
const MODEL: &str = "llama3.2:latest";

/// A queue directory that outlives each agent run; removed on drop.
struct QueueDir(PathBuf);

impl QueueDir {
    fn new() -> QueueDir {
        let dir = std::env::temp_dir().join(format!(
            "ollama-tap-queue-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        QueueDir(dir)
    }

    /// Every segment file, oldest first.
    fn segments(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = walk(&self.0)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        files.sort();
        files
    }
}

impl Drop for QueueDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// One instance in front of `backend`, pushing every second to `urls` through `queue`.
fn conf(urls: &[String], backend: &str, queue: &QueueDir) -> ConfDir {
    let writers: String = urls
        .iter()
        .map(|u| format!("[[writers]]\nurl = \"{u}\"\n"))
        .collect();
    ConfDir::new(
        &format!(
            "[global]\ninterval = 1\nhostname = \"h\"\n{writers}[writer_opt]\nqueue_dir = \"{}\"\n",
            queue.0.display()
        ),
        &format!(
            "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"127.0.0.1:0\"\ninterval = 1\n"
        ),
    )
}

async fn generate(url: &str) {
    let res = common::generate(url, "llama3.2", "three little words", false).await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
}

/// Three waves of traffic, each followed by a snapshot in the queue (the receiver is down);
/// returns `/metrics` after the last one.
async fn three_intervals_of_traffic(agent: &Binary) -> Metrics {
    let mut queued = 0.0;
    for wave in 1..=3 {
        generate(&agent.url()).await;
        let m = agent
            .wait_metrics(|m| {
                m.sum(QUEUED, &[]) > queued
                    && m.get(REQUESTS, &[("model", MODEL)]) == Some(wave as f64)
            })
            .await;
        // A snapshot taken after this wave's request: the gauge grows once more.
        let now = m.sum(QUEUED, &[]);
        queued = agent
            .wait_metrics(|m| m.sum(QUEUED, &[]) > now)
            .await
            .sum(QUEUED, &[]);
    }
    agent.metrics().await
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `name{labels}` of a series.
fn key(ts: &TimeSeries) -> String {
    let labels: Vec<String> = ts
        .labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    labels.join(",")
}

/// Every sample stamped before `until`, per series in arrival order: (timestamp, value).
fn samples_before(series: &[TimeSeries], until: i64) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for ts in series {
        for s in ts.samples.iter().filter(|s| s.timestamp < until) {
            out.entry(key(ts)).or_default().push((s.timestamp, s.value));
        }
    }
    out
}

/// A number after `key=` in the first log line that has `marker`.
fn logged(logs: &str, marker: &str, key: &str) -> u64 {
    let line = logs
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} line in:\n{logs}"));
    let field = if key.is_empty() {
        line.split(marker)
            .next()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    } else {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
            .to_owned()
    };
    field
        .parse()
        .unwrap_or_else(|_| panic!("{field:?} in {line:?}"))
}

/// Waits until `receiver` accepted `n` samples stamped before `until`; returns them per series.
async fn until_delivered(
    receiver: &Receiver,
    until: i64,
    n: usize,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut got = BTreeMap::new();
    common::wait_until("the queued samples arrive", || {
        got = samples_before(&receiver.accepted_series(), until);
        got.values().map(Vec::len).sum::<usize>() >= n
    })
    .await;
    got
}

/// Per series, timestamps strictly increase in arrival order: oldest first, none twice.
fn assert_in_order_once(got: &BTreeMap<String, Vec<(i64, f64)>>) {
    for (series, samples) in got {
        assert!(
            samples.windows(2).all(|w| w[0].0 < w[1].0),
            "{series}: {samples:?}"
        );
    }
}

/// The value of the run's request counter for the model, last sent before `until`.
fn last_requests(got: &BTreeMap<String, Vec<(i64, f64)>>) -> f64 {
    let (_, samples) = got
        .iter()
        .find(|(k, _)| k.contains(&format!("__name__=\"{REQUESTS}\"")) && k.contains(MODEL))
        .expect("the request counter was pushed");
    samples.last().unwrap().1
}

/// An agent that queued three intervals of traffic while its receivers were down: the test
/// receiver (down), the backend, the queue folder, the writer URLs (the receiver's, then
/// `more`), the agent and its `/metrics` after the traffic.
struct Outage {
    receiver: Receiver,
    fake: FakeOllama,
    queue: QueueDir,
    urls: Vec<String>,
    agent: Binary,
    before: Metrics,
}

impl Outage {
    async fn start(more: &[String]) -> Outage {
        let receiver = Receiver::start(Script::Always(204)).await;
        receiver.stop().await;
        let fake = FakeOllama::start().await;
        let queue = QueueDir::new();
        let urls: Vec<String> = std::iter::once(receiver.url())
            .chain(more.iter().cloned())
            .collect();
        let agent = Binary::start(conf(&urls, &fake.url(), &queue)).await;
        let before = three_intervals_of_traffic(&agent).await;
        Outage {
            receiver,
            fake,
            queue,
            urls,
            agent,
            before,
        }
    }

    /// The agent again, on the same configuration and queue.
    async fn start_again(&self) -> Binary {
        Binary::start(conf(&self.urls, &self.fake.url(), &self.queue)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_then_a_restart_delivers_every_sample_once_in_order() {
    let mut o = Outage::start(&[]).await;
    let exit = tokio::task::block_in_place(|| o.agent.terminate());
    assert!(exit.success(), "{exit:?}");
    let stopped = now_ms();
    let kept = logged(
        &o.agent.logs(),
        " samples left unsent at shutdown, kept",
        "",
    );
    assert!(
        kept as f64 >= o.before.sum(QUEUED, &[]),
        "{}",
        o.agent.logs()
    );

    o.receiver.restart().await;
    let again = o.start_again().await;
    let got = until_delivered(&o.receiver, stopped, kept as usize).await;
    assert_eq!(
        logged(&again.logs(), "resuming the samples", "samples"),
        kept
    );
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), kept as usize);
    assert_in_order_once(&got);
    assert_eq!(
        last_requests(&got),
        o.before.value(REQUESTS, &[("model", MODEL)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_outage_loses_no_snapshot_that_was_queued() {
    let mut o = Outage::start(&[]).await;
    let kill = Command::new("kill")
        .args(["-KILL", &o.agent.pid().to_string()])
        .status();
    assert!(kill.unwrap().success());
    let killed = now_ms();
    common::wait_until("the killed agent exits", || !o.agent.running()).await;

    o.receiver.restart().await;
    let again = o.start_again().await;
    let resumed = logged(&again.logs(), "resuming the samples", "samples");
    // Every snapshot that /metrics counted as queued was on disk when the kill came.
    assert!(
        resumed as f64 >= o.before.sum(QUEUED, &[]),
        "{}",
        again.logs()
    );
    let got = until_delivered(&o.receiver, killed, resumed as usize).await;
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), resumed as usize);
    assert_in_order_once(&got);
    assert_eq!(
        last_requests(&got),
        o.before.value(REQUESTS, &[("model", MODEL)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_damaged_queue_file_is_counted_logged_and_the_rest_is_sent() {
    let mut o = Outage::start(&[]).await;
    assert!(tokio::task::block_in_place(|| o.agent.terminate()).success());
    let stopped = now_ms();
    let kept = logged(
        &o.agent.logs(),
        " samples left unsent at shutdown, kept",
        "",
    );
    // A crash's torn tail on the newest file, flipped bytes in the middle of the oldest.
    let files = o.queue.segments();
    assert!(!files.is_empty());
    let newest = files.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let mut oldest = std::fs::read(&files[0]).unwrap();
    let middle = oldest.len() / 2;
    oldest[middle] ^= 0x5a;
    std::fs::write(&files[0], oldest).unwrap();

    o.receiver.restart().await;
    let again = o.start_again().await;
    let logs = again.logs();
    let lost = logged(&logs, "unreadable records skipped", "lost_samples");
    let resumed = logged(&logs, "unreadable records skipped", "resumed_samples");
    assert!(lost > 0, "{logs}");
    assert_eq!(resumed + lost, kept, "{logs}");
    assert_eq!(
        logs.matches("unreadable records skipped").count(),
        1,
        "logged once: {logs}"
    );
    let got = until_delivered(&o.receiver, stopped, resumed as usize).await;
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), resumed as usize);
    assert_in_order_once(&got);
    let m = again.metrics().await;
    assert_eq!(m.value(DROPPED, &[("reason", "corrupt")]), lost as f64);
    let mut again = again;
    again.assert_healthy();
}

/// A real Prometheus that was not running while the o.agent queued, started before the o.agent
/// comes back: afterwards it returns, for every series, exactly the (timestamp, value) pairs
/// that a test o.receiver beside it got from the same o.queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_behind_the_outage_and_the_restart_returns_every_value() {
    let port = common::ClosedPort::new();
    let mut o = Outage::start(&[format!("{}/api/v1/write", port.url())]).await;
    assert!(tokio::task::block_in_place(|| o.agent.terminate()).success());
    let stopped = now_ms();

    let prometheus = Prometheus::start_on(port).await;
    o.receiver.restart().await;
    let again = o.start_again().await;
    let kept = logged(&again.logs(), "resuming the samples", "samples");
    let want = until_delivered(&o.receiver, stopped, kept as usize).await;
    let requests = want
        .iter()
        .find(|(k, _)| k.contains(&format!("__name__=\"{REQUESTS}\"")) && k.contains(MODEL))
        .map(|(_, v)| v.clone())
        .unwrap();
    let query = format!(
        "{REQUESTS}{{model=\"{MODEL}\"}}[1h] @ {}",
        stopped as f64 / 1000.0
    );
    let got = common::eventually("prometheus holds every value", || async {
        let r = prometheus.query(&query).await;
        let got: Vec<(i64, f64)> = r
            .first()
            .and_then(|s| s["values"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let ts = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ts, v[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        if got.len() >= requests.len() {
            Ok(got)
        } else {
            Err(format!("prometheus has {got:?}, want {requests:?}"))
        }
    })
    .await;
    assert_eq!(got, requests);
}

/// A queue directory that cannot be created (here: below a file) stops the start with exit 64
/// and one line naming the key, the path and the OS reason, like every configuration error;
/// so does a `queue_max_age` that is not a duration.
#[test]
fn a_queue_dir_that_cannot_be_made_stops_the_start_naming_key_path_and_reason() {
    let instance =
        "[[instances]]\nollama_url = \"http://127.0.0.1:1\"\nproxy_listen_addr = \"127.0.0.1:0\"\n";
    let probe = ConfDir::new("", instance);
    let below_a_file = probe.path().join("config.toml").join("queue");
    let writer = "[[writers]]\nurl = \"http://127.0.0.1:1/write\"\n";
    let cases = [
        (
            format!(
                "{writer}[writer_opt]\nqueue_dir = \"{}\"\n",
                below_a_file.display()
            ),
            vec![
                "writer_opt.queue_dir",
                below_a_file.to_str().unwrap(),
                "Not a directory",
            ],
        ),
        (
            format!("{writer}[writer_opt]\nqueue_max_age = \"a while\"\n"),
            vec!["config.toml", "writer_opt.queue_max_age"],
        ),
    ];
    for (config, needles) in cases {
        let conf = ConfDir::new(&config, instance);
        let out = common::command(&conf, &[]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{needle} not named: {err}");
        }
    }
}
