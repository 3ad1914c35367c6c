//! `otel_semconv = true`: the OpenTelemetry GenAI names, pushed into a real Prometheus, answer
//! the queries GenAI dashboards (n9e's built-in LLM boards among them) write against them with
//! the right numbers.

use crate::common;

use std::collections::BTreeMap;

use common::fake_ollama::FakeOllama;
use common::prometheus::Prometheus;
use common::{Binary, ConfDir};

/// `(label value, value)` of every series of an instant query, by `label`.
async fn by(prom: &Prometheus, label: &str, query: &str) -> BTreeMap<String, f64> {
    prom.query(query)
        .await
        .iter()
        .map(|s| {
            let key = s["metric"][label].as_str().unwrap_or("").to_owned();
            let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            (key, v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_queries_return_the_right_numbers_from_a_real_prometheus() {
    let prom = Prometheus::start().await;
    let fake = FakeOllama::start().await;
    let conf = ConfDir::new(
        &format!(
            "[global]\nhostname = \"gpu-o\"\ninterval = 1\n[[writers]]\nurl = \"{}\"\n",
            prom.write_url()
        ),
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\notel_semconv = true\n",
            fake.url()
        ),
    );
    let agent = Binary::start(conf).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: String| {
        let req = client.post(format!("{}{path}", agent.url())).body(body);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap();
        }
    };
    // llama3.2: 3 answers of 6 prompt and 4 output tokens, and one stream that fails
    for _ in 0..3 {
        post(
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"one two three four five six [[tokens:4]]","stream":false}"#.into(),
        )
        .await;
    }
    post(
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"this one breaks [[error_after:1]]"}"#.into(),
    )
    .await;
    // qwen2.5:0.5b: 2 streamed chats of 2 prompt and 10 output tokens
    for _ in 0..2 {
        post(
            "/api/chat",
            r#"{"model":"qwen2.5:0.5b","messages":[{"role":"user","content":"hi there [[tokens:10]]"}]}"#
                .into(),
        )
        .await;
    }
    agent
        .wait_metrics(|m| m.sum("ollama_requests_total", &[]) == 6.0)
        .await;
    prom.wait_for_value("sum(gen_ai_client_operation_duration_seconds_count)", "6")
        .await;

    // requests per model, failures (error_type) included
    let requests = by(
        &prom,
        "gen_ai_request_model",
        "sum by (gen_ai_request_model) (gen_ai_client_operation_duration_seconds_count)",
    )
    .await;
    assert_eq!(
        requests,
        BTreeMap::from([
            ("llama3.2:latest".into(), 4.0),
            ("qwen2.5:0.5b".into(), 2.0)
        ])
    );
    let failed = by(
        &prom,
        "error_type",
        "sum by (error_type) (gen_ai_client_operation_duration_seconds_count{error_type!=\"\"})",
    )
    .await;
    assert_eq!(failed, BTreeMap::from([("stream_error".into(), 1.0)]));

    // average output tokens per request: the division of n9e's LLM board matches series
    let per_request = by(
        &prom,
        "gen_ai_request_model",
        "sum without (gen_ai_token_type) (gen_ai_client_token_usage_sum{gen_ai_token_type=\"output\"}) \
         / gen_ai_client_operation_duration_seconds_count",
    )
    .await;
    assert_eq!(
        per_request,
        BTreeMap::from([
            ("llama3.2:latest".into(), 4.0),
            ("qwen2.5:0.5b".into(), 10.0)
        ])
    );

    // top models by input tokens
    let top = by(
        &prom,
        "gen_ai_request_model",
        "topk(1, sum by (gen_ai_request_model) (gen_ai_client_token_usage_sum{gen_ai_token_type=\"input\"}))",
    )
    .await;
    assert_eq!(top, BTreeMap::from([("llama3.2:latest".into(), 18.0)]));

    // operations and the streamed-only figures
    let ops = by(
        &prom,
        "gen_ai_operation_name",
        "sum by (gen_ai_operation_name) (gen_ai_client_operation_duration_seconds_count)",
    )
    .await;
    assert_eq!(
        ops,
        BTreeMap::from([("chat".into(), 2.0), ("text_completion".into(), 4.0)])
    );
    let ttft = by(
        &prom,
        "gen_ai_request_model",
        "sum by (gen_ai_request_model) (gen_ai_server_time_to_first_token_seconds_count)",
    )
    .await;
    assert_eq!(ttft, BTreeMap::from([("qwen2.5:0.5b".into(), 2.0)]));
    let provider = by(
        &prom,
        "gen_ai_provider_name",
        "count by (gen_ai_provider_name) (gen_ai_client_token_usage_count)",
    )
    .await;
    assert_eq!(provider.keys().collect::<Vec<_>>(), ["ollama"]);
}
