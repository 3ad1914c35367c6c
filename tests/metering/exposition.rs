//! `/metrics` is valid Prometheus text: `promtool check metrics` (Debian's prometheus package,
//! installed by scripts/test.sh) finds nothing but the original plugin's two counter names
//! without `_total`, which are kept for compatibility.

use crate::common;

use common::fake_ollama::FakeOllama;
use common::promtool::{check_metrics, kept_name_findings};
use common::InProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_but_the_two_kept_counter_names() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let client = reqwest::Client::new();
    for body in [
        r#"{"model":"llama3.2","prompt":"a b","stream":false}"#,
        r#"{"model":"llama3.2","prompt":"a b [[error_after:1]]"}"#,
        r#"{"model":"nope","prompt":"x"}"#,
        r#"{"model":"gemma3:1b"}"#,
    ] {
        client
            .post(format!("{}/api/generate", agent.url()))
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    let res = reqwest::get(format!("{}/metrics", agent.url()))
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    assert!(
        text.contains("# TYPE ollama_response_duration_seconds summary"),
        "{text}"
    );

    let (findings, code, report) = check_metrics(&text);
    // Exactly the two lint findings for the kept names, nothing else: exit code 3 is
    // promtool's "lint problems only" (1 would be a parse error).
    assert_eq!(
        findings,
        kept_name_findings(),
        "promtool found problems:\n{report}\n---\n{text}"
    );
    assert_eq!(code, Some(3), "{report}");
}
