//! The OpenAI-compatible endpoints through the agent: token counts, the `include_usage`
//! option, and time to first token as a client sees it.

use crate::common;

use std::time::Instant;

use common::fake_ollama::FakeOllama;
use common::{post, ConfDir, InProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_usage_counts_streamed_chat_tokens_and_the_client_sees_no_usage_chunk() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(&fake.url(), "include_usage = true")).await;
    let url = format!("{}/v1/chat/completions", agent.url());
    let body = r#"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"two words [[tokens:6]]"}]}"#;
    let res = post(&url, body).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("\"usage\""),
        "the client did not ask for usage: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // A client that asked for usage itself still gets it.
    let asked = r#"{"model":"llama3.2","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"two words [[tokens:6]]"}]}"#;
    let text = post(&url, asked).await.text().await.unwrap();
    assert!(
        text.contains("\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":6"),
        "{text}"
    );

    let m = agent.metrics().await;
    let l = [("model", "llama3.2:latest")];
    assert_eq!(m.get("ollama_requests_success", &l), Some(2.0));
    assert_eq!(m.get("ollama_tokens_generated_total", &l), Some(12.0));
    assert_eq!(m.get("ollama_prompt_tokens_total", &l), Some(4.0));
    let e = [
        ("model", "llama3.2:latest"),
        ("endpoint", "/v1/chat/completions"),
        ("reason", "stop"),
    ];
    assert_eq!(m.get("ollama_finish_reason_total", &e), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_include_usage_streamed_chat_is_counted_but_carries_no_tokens() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let body = r#"{"model":"qwen2.5:0.5b","stream":true,"messages":[{"role":"user","content":"hi [[tokens:4]]"}]}"#;
    let text = post(&format!("{}/v1/chat/completions", agent.url()), body)
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("\"usage\""));
    let m = agent.metrics().await;
    let l = [("model", "qwen2.5:0.5b")];
    assert_eq!(m.get("ollama_requests_success", &l), Some(1.0));
    assert_eq!(m.get("ollama_tokens_generated_total", &l), Some(0.0));
}

/// The agent's time to first token lies between the backend's first-chunk delay (it cannot be
/// less: the agent starts its clock when the request arrives) and what the client measures (it
/// cannot be more: the client sent first and receives after the agent). Causality, not jitter,
/// is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_first_token_lies_between_the_backends_delay_and_what_the_client_sees() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    for (path, body) in [
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"go [[first_delay:300]] [[delay:50]] [[tokens:3]]"}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gemma3:1b","stream":true,"messages":[{"role":"user","content":"go [[first_delay:300]] [[delay:50]] [[tokens:3]]"}]}"#,
        ),
    ] {
        let sent = Instant::now();
        let mut res = reqwest::Client::new()
            .post(format!("{}{path}", agent.url()))
            .body(body)
            .send()
            .await
            .unwrap();
        let mut client_ttft = None;
        while let Some(chunk) = res.chunk().await.unwrap() {
            let text = String::from_utf8_lossy(&chunk);
            let content = text.contains("\"response\":\"The") || text.contains("\"content\":\"The");
            if client_ttft.is_none() && content {
                client_ttft = Some(sent.elapsed());
            }
        }
        let client_ttft = client_ttft.expect("a content chunk").as_secs_f64();
        let m = agent.metrics().await;
        let model = if path == "/api/generate" {
            "llama3.2:latest"
        } else {
            "gemma3:1b"
        };
        let l = [("model", model), ("endpoint", path)];
        assert_eq!(
            m.get("ollama_time_to_first_token_seconds_count", &l),
            Some(1.0),
            "{path}"
        );
        let agent_ttft = m.get("ollama_time_to_first_token_seconds_sum", &l).unwrap();
        assert!(
            (0.3..=client_ttft).contains(&agent_ttft),
            "{path}: backend delay 0.3 s, agent measured {agent_ttft:.4} s, client saw {client_ttft:.4} s"
        );
        // And it is the first content chunk, not the answer's head or the end.
        let duration = m.get("ollama_request_duration_seconds_sum", &l).unwrap();
        assert!(
            agent_ttft < duration,
            "{path}: TTFT {agent_ttft} ≥ duration {duration}"
        );
    }
}
