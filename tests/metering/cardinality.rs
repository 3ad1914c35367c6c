//! A flood of made-up model names cannot blow up the series count: a capped number of models
//! get a label of their own, 404'd names never do, and every request is still counted.

use crate::common;

use std::collections::BTreeSet;

use common::fake_ollama::FakeOllama;
use common::{Binary, ConfDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_model_names_are_capped_and_counted_under_other() {
    let fake = FakeOllama::start().await;
    let conf = ConfDir::new(
        "[global]\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\nmax_models = 5\n",
            fake.url()
        ),
    );
    let mut agent = Binary::start(conf).await;
    let base = agent.url();
    let client = reqwest::Client::new();
    // 2,000 names the backend does not know (404), then 10 it does (`test-*`), 4 at a time.
    let names: Vec<String> = (0..2000)
        .map(|i| format!("made-up-{i}"))
        .chain((0..10).map(|i| format!("test-{i}")))
        .collect();
    for batch in names.chunks(4) {
        let mut tasks = Vec::new();
        for name in batch {
            let (client, url) = (client.clone(), format!("{base}/api/generate"));
            let body = format!(r#"{{"model":"{name}","prompt":"hi","stream":false}}"#);
            tasks.push(tokio::spawn(async move {
                client.post(url).body(body).send().await.unwrap().status()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let m = agent.metrics().await;
    let models: BTreeSet<&str> =
        m.0.lines()
            .filter(|l| l.starts_with("ollama_requests_total{"))
            .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
            .collect();
    // Five of the ten known models (whichever came first) got a label; the rest are "other".
    assert_eq!(models.len(), 6, "{models:?}");
    assert!(models.contains("other"));
    assert!(models
        .iter()
        .filter(|m| **m != "other")
        .all(|m| m.starts_with("test-") && m.ends_with(":latest")));
    assert_eq!(
        m.get("ollama_requests_total", &[("model", "other")]),
        Some(2005.0)
    );
    assert_eq!(
        m.get("ollama_requests_failed", &[("model", "other")]),
        Some(2000.0)
    );
    assert_eq!(
        m.get("ollama_requests_success", &[("model", "other")]),
        Some(5.0)
    );
    let total: f64 = models
        .iter()
        .map(|model| m.value("ollama_requests_total", &[("model", model)]))
        .sum();
    assert_eq!(total, 2010.0, "every request is counted somewhere");

    agent.assert_healthy();
    let logs = agent.logs();
    assert_eq!(logs.matches("model label cap reached").count(), 1, "{logs}");
}
