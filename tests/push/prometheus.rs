//! Against a real Prometheus (Debian's `prometheus` package, installed by scripts/test.sh):
//! the real binary pushes by remote-write, and a PromQL query returns what `/metrics` shows.

use crate::common;

use common::fake_ollama::FakeOllama;
use common::prometheus::Prometheus;
use common::{Binary, ConfDir, Metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_returns_the_pushed_values() {
    let prom = Prometheus::start().await;
    let fake = FakeOllama::start().await;
    let conf = ConfDir::new(
        &format!(
            "[global]\nhostname = \"gpu-box\"\ninterval = 1\n[global.labels]\nregion = \"eu\"\n\
             [[writers]]\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n",
            prom.port
        ),
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n[instances.labels]\nservice = \"ollama\"\n",
            fake.url()
        ),
    );
    let agent = Binary::start(conf).await;
    let port = agent.addr().port();
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client
            .post(format!("http://127.0.0.1:{port}/api/generate"))
            .body(r#"{"model":"llama3.2","prompt":"why is the sky blue","stream":false}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap();
    }
    let metrics = Metrics(
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let want_tokens = metrics
        .get(
            "ollama_tokens_generated_total",
            &[("model", "llama3.2:latest")],
        )
        .unwrap();
    assert_eq!(want_tokens, 15.0);

    let series = prom
        .wait_for_value(
            r#"ollama_tokens_generated_total{model="llama3.2:latest"}"#,
            "15",
        )
        .await;
    let labels = &series[0]["metric"];
    assert_eq!(labels["agent_hostname"], "gpu-box");
    assert_eq!(labels["region"], "eu");
    assert_eq!(labels["service"], "ollama");
    let total = prom
        .query(r#"ollama_requests_total{model="llama3.2:latest"}"#)
        .await;
    assert_eq!(total[0]["value"][1], "3");
    let p95 = prom
        .query(r#"ollama_response_duration_seconds{model="llama3.2:latest",quantile="0.95"}"#)
        .await;
    assert_eq!(p95.len(), 1, "{p95:?}");
    let up = prom.query("ollama_up").await;
    assert_eq!(up[0]["value"][1], "1");
}
