//! `/metrics` and `/health` can be protected (bearer token or basic auth) and moved to a
//! listener of their own, so that only the proxy port faces clients.

mod common;

use common::fake_ollama::FakeOllama;
use common::{ConfDir, InProcess};

#[tokio::test]
async fn a_bearer_token_or_basic_auth_protects_metrics_and_health_not_the_proxy() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(
        &fake.url(),
        "metrics_bearer_token = \"s3cret\"\nmetrics_basic_auth_user = \"prom\"\nmetrics_basic_auth_pass = \"pw\"",
    ))
    .await;
    let c = reqwest::Client::new();
    for path in ["/metrics", "/health"] {
        let url = format!("{}{path}", agent.url());
        let res = c.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        assert_eq!(
            res.headers()["www-authenticate"],
            "Basic realm=\"ollama-tap\""
        );
        assert!(res.text().await.unwrap().starts_with("{\"error\":"));
        assert_eq!(
            c.get(&url)
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            c.get(&url)
                .basic_auth("prom", Some("nope"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let ok = c.get(&url).bearer_auth("s3cret").send().await.unwrap();
        assert_ne!(ok.status(), 401, "{path}");
        let ok = c
            .get(&url)
            .basic_auth("prom", Some("pw"))
            .send()
            .await
            .unwrap();
        assert_ne!(ok.status(), 401, "{path}");
    }
    // The proxy itself asks for nothing.
    let res = c
        .get(format!("{}/api/version", agent.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn metrics_on_their_own_listener_leave_the_proxy_port_to_ollama() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(
        &fake.url(),
        "metrics_listen_addr = \"127.0.0.1:0\"",
    ))
    .await;
    let metrics = agent.metrics_addrs[0].expect("a metrics listener");
    assert_ne!(metrics, agent.addrs[0]);
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("# TYPE ollama_requests_total counter"));
    let health = reqwest::get(format!("http://{metrics}/health"))
        .await
        .unwrap();
    assert!(health.status() == 200 || health.status() == 503);
    // On the proxy port, /metrics is just a path that goes to Ollama (which has none).
    let res = reqwest::get(format!("{}/metrics", agent.url()))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "404 page not found");
    assert!(fake.stats().paths.iter().any(|p| p == "GET /metrics"));
    // And the metrics listener proxies nothing.
    let res = reqwest::get(format!("http://{metrics}/api/version"))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}
