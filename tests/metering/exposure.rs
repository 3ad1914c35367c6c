//! `/metrics` and `/health` can be protected (bearer token or basic auth) and moved to a
//! listener of their own, so that only the proxy port faces clients.

use crate::common;

use common::fake_ollama::{self, FakeOllama};
use common::{ConfDir, InProcess};

/// Polls `GET url` (with `auth` applied) until it answers 200: the agent's first backend check
/// has found the fake up. Returns that answer's body.
async fn until_ok(
    url: &str,
    auth: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> String {
    let c = &reqwest::Client::new();
    let auth = &auth;
    common::eventually(&format!("{url} answers 200"), move || async move {
        let res = auth(c.get(url)).send().await.unwrap();
        if res.status() == 200 {
            Ok(res.text().await.unwrap())
        } else {
            Err(res.status())
        }
    })
    .await
}

/// A `/health` body once the backend check found the fake up.
fn assert_health_up(body: &str, fake: &FakeOllama) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["backend_up"], true, "{v}");
    assert_eq!(v["backend_version"], fake_ollama::VERSION, "{v}");
    assert_eq!(v["backend"], fake.url(), "{v}");
}

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
        // Either credential opens both endpoints, with their real answers.
        let bearer = until_ok(&url, |r| r.bearer_auth("s3cret")).await;
        let basic = until_ok(&url, |r| r.basic_auth("prom", Some("pw"))).await;
        for body in [bearer, basic] {
            if path == "/metrics" {
                assert!(body.contains("\nollama_up{"), "{body}");
                assert!(
                    body.contains("# TYPE ollama_requests_total counter"),
                    "{body}"
                );
            } else {
                assert_health_up(&body, &fake);
            }
        }
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
    // The backend is up: once the agent's first check has run, /health says so.
    let health = until_ok(&format!("http://{metrics}/health"), |r| r).await;
    assert_health_up(&health, &fake);
    // On the proxy port, /metrics is just a path that goes to Ollama (which has none).
    let res = reqwest::get(format!("{}/metrics", agent.url()))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "404 page not found");
    let paths = fake.stats().paths;
    assert_eq!(
        paths.iter().filter(|p| *p == "GET /metrics").count(),
        1,
        "{paths:?}"
    );
    // And the metrics listener proxies nothing.
    // (Ollama would answer 200 with its version.)
    let res = reqwest::get(format!("http://{metrics}/api/version"))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(!res.text().await.unwrap().contains(fake_ollama::VERSION));
}
