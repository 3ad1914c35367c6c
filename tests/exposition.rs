//! `/metrics` is valid Prometheus text: `promtool check metrics` (Debian's prometheus package,
//! installed by scripts/test.sh) finds nothing but the original plugin's two counter names
//! without `_total`, which are kept for compatibility.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::fake_ollama::FakeOllama;
use common::InProcess;

/// The lint lines allowed: the original plugin's counter names, in byte order.
const ALLOWED: [&str; 2] = ["ollama_requests_failed", "ollama_requests_success"];

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

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly the two lint findings for the kept names, nothing else: exit code 3 is
    // promtool's "lint problems only" (1 would be a parse error).
    let mut findings: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    findings.sort_unstable();
    let want: Vec<String> = ALLOWED
        .iter()
        .map(|name| format!("{name} counter metrics should have \"_total\" suffix"))
        .collect();
    assert_eq!(
        findings, want,
        "promtool found problems:\n{report}\n---\n{text}"
    );
    assert_eq!(out.status.code(), Some(3), "{report}");
}
