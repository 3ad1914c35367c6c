//! Queue wait, end to end: the fake Ollama serves one request per model at a time (Ollama's
//! `OLLAMA_NUM_PARALLEL=1`) and, as Ollama does, puts each request's wait for that slot into
//! `total_duration` only. The agent's `ollama_queue_wait_seconds` must hold exactly those
//! waits (plus the fake's fixed 1 ms of "templating"), in the buckets they belong to.

use crate::common;

use common::fake_ollama::{FakeOllama, TOTAL_EXTRA_NS};
use common::Binary;
use ollama_tap::QUEUE_WAIT_BUCKETS;

const MODEL: &str = "llama3.2:latest";
const HOLD_MS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_requests_on_one_slot_report_the_waits_ollama_put_in_total_duration() {
    let fake = FakeOllama::start().await;
    fake.set_num_parallel(1);
    let agent = Binary::single(&fake.url(), "").await;
    let url = format!("{}/api/generate", agent.url());

    // four at once, each holding the slot 200 ms: two streamed, two not
    let client = reqwest::Client::new();
    let requests = (0..4).map(|i| {
        let body = format!(
            r#"{{"model":"llama3.2","prompt":"request {i} [[first_delay:{HOLD_MS}]] [[tokens:3]]","stream":{}}}"#,
            i % 2 == 0
        );
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let res = client.post(url).body(body).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        })
    });
    for r in requests.collect::<Vec<_>>() {
        r.await.unwrap();
    }
    let m = agent
        .wait_metrics(|m| m.value("ollama_queue_wait_seconds_count", &[("model", MODEL)]) == 4.0)
        .await;

    // the fake's slot: taken one after another, each at least a hold after the one before
    let mut waits = fake.stats().slot_waits;
    assert_eq!(waits.len(), 4, "{waits:?}");
    waits.sort_by_key(|w| w.taken_at);
    for pair in waits.windows(2) {
        let gap = pair[1].taken_at - pair[0].taken_at;
        assert!(
            gap.as_millis() as u64 >= HOLD_MS,
            "slot reused after {gap:?}: {waits:?}"
        );
    }
    eprintln!(
        "slot waits: {:?}",
        waits.iter().map(|w| w.waited).collect::<Vec<_>>()
    );

    // what the agent reports is exactly what Ollama (the fake) put into total_duration
    let reported: Vec<f64> = waits
        .iter()
        .map(|w| (w.waited.as_nanos() as u64 + TOTAL_EXTRA_NS) as f64 / 1e9)
        .collect();
    let labels = [("model", MODEL), ("endpoint", "/api/generate")];
    let sum = m.value("ollama_queue_wait_seconds_sum", &labels);
    let want_sum: f64 = waits
        .iter()
        .map(|w| w.waited.as_nanos() as u64 + TOTAL_EXTRA_NS)
        .sum::<u64>() as f64
        / 1e9;
    assert!((sum - want_sum).abs() < 1e-9, "sum {sum}, want {want_sum}");
    for bound in QUEUE_WAIT_BUCKETS {
        let le = ollama_tap::le_label(bound);
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        let got = m.value("ollama_queue_wait_seconds_bucket", &with_le);
        let want = reported.iter().filter(|&&w| w <= bound).count() as f64;
        assert_eq!(got, want, "le={le}: reported waits {reported:?}");
    }
}
