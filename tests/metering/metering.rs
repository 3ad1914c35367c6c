//! Metering: a known mix of requests through the agent gives exactly the counters and token
//! sums the backend reported, under the original plugin's metric names.

use crate::common;

use common::fake_ollama::{FakeOllama, MODEL_ERROR};
use common::{InProcess, Metrics};
use serde_json::{json, Value};

/// POSTs `body` to the agent and reads the whole answer.
async fn post(agent: &InProcess, path: &str, body: Value) -> (u16, String) {
    let res = common::post(&format!("{}{path}", agent.url()), body).await;
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})
}

fn generate(model: &str, prompt: &str, stream: bool) -> Value {
    json!({"model": model, "prompt": prompt, "stream": stream})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_mix_gives_exact_counters() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;

    // llama3.2: 3 streamed chats of 3 prompt words and 5 tokens, one mid-stream error.
    for _ in 0..3 {
        let (status, body) =
            post(&agent, "/api/chat", chat("llama3.2", "why sky blue", true)).await;
        assert_eq!(status, 200);
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6, "5 tokens and the final object: {body}");
        let last = &lines[5];
        assert_eq!(
            (
                &last["done"],
                &last["prompt_eval_count"],
                &last["eval_count"]
            ),
            (&json!(true), &json!(3), &json!(5)),
            "{body}"
        );
    }
    let (status, body) = post(
        &agent,
        "/api/chat",
        chat("llama3.2", "fail [[error_after:2]] please", true),
    )
    .await;
    assert_eq!(status, 200);
    // Two content lines, then the error line: no final object.
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert_eq!(lines[2], format!(r#"{{"error":"{MODEL_ERROR}"}}"#));
    // qwen2.5:0.5b: 2 non-streamed generates of 2 prompt words and 7 tokens.
    for _ in 0..2 {
        let (status, _) = post(
            &agent,
            "/api/generate",
            generate("qwen2.5:0.5b", "one two [[tokens:7]]", false),
        )
        .await;
        assert_eq!(status, 200);
    }
    // A streamed generate whose lines are split across chunks.
    let (status, _) = post(
        &agent,
        "/api/generate",
        generate("qwen2.5:0.5b", "a b c d [[split]]", true),
    )
    .await;
    assert_eq!(status, 200);
    // Unknown model: 404.
    let (status, body) = post(&agent, "/api/generate", generate("nope", "hello", true)).await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"model 'nope' not found"}"#)
    );
    // Load-only: counted, kept out of tokens and latency.
    let (status, _) = post(&agent, "/api/generate", json!({"model": "gemma3:1b"})).await;
    assert_eq!(status, 200);

    let m = agent.metrics().await;
    let l = [("model", "llama3.2:latest")];
    let q = [("model", "qwen2.5:0.5b")];
    let g = [("model", "gemma3:1b")];
    // A name the backend answered 404 for gets no label of its own (cardinality guard).
    let n = [("model", "other")];
    assert_eq!(m.get("ollama_requests_total", &l), Some(4.0));
    assert_eq!(m.get("ollama_requests_success", &l), Some(3.0));
    assert_eq!(m.get("ollama_requests_failed", &l), Some(1.0));
    assert_eq!(m.get("ollama_tokens_generated_total", &l), Some(15.0));
    assert_eq!(m.get("ollama_prompt_tokens_total", &l), Some(9.0));
    assert_eq!(
        m.get("ollama_response_duration_seconds_count", &l),
        Some(3.0)
    );
    assert_eq!(
        m.get("ollama_model_load_duration_seconds_count", &l),
        Some(3.0)
    );
    let load_sum = m.get("ollama_model_load_duration_seconds_sum", &l).unwrap();
    assert!((load_sum - 0.006).abs() < 1e-9, "{load_sum}");

    assert_eq!(m.get("ollama_requests_total", &q), Some(3.0));
    assert_eq!(m.get("ollama_requests_success", &q), Some(3.0));
    assert_eq!(m.get("ollama_tokens_generated_total", &q), Some(19.0));
    assert_eq!(m.get("ollama_prompt_tokens_total", &q), Some(8.0));

    assert_eq!(m.get("ollama_requests_total", &n), Some(1.0));
    assert_eq!(m.get("ollama_requests_failed", &n), Some(1.0));
    assert_eq!(m.get("ollama_tokens_generated_total", &n), Some(0.0));

    assert_eq!(m.get("ollama_requests_total", &g), Some(1.0));
    assert_eq!(m.get("ollama_requests_success", &g), Some(1.0));
    assert_eq!(m.get("ollama_tokens_generated_total", &g), Some(0.0));
    assert_eq!(
        m.get("ollama_response_duration_seconds_count", &g),
        Some(0.0)
    );

    // Every token the backend reported in a final object is in the counters, no more.
    let stats = fake.stats();
    let total = |m: &Metrics, name: &str| {
        ["llama3.2:latest", "qwen2.5:0.5b", "gemma3:1b", "other"]
            .iter()
            .map(|model| m.value(name, &[("model", model)]))
            .sum::<f64>()
    };
    assert_eq!(
        total(&m, "ollama_tokens_generated_total"),
        stats.eval_tokens_sent as f64
    );
    assert_eq!(
        total(&m, "ollama_prompt_tokens_total"),
        stats.prompt_tokens_sent as f64
    );

    // Summaries: quantiles are present and ordered.
    let p0 = m
        .get(
            "ollama_response_duration_seconds",
            &[("model", "llama3.2:latest"), ("quantile", "0")],
        )
        .unwrap();
    let p50 = m
        .get(
            "ollama_response_duration_seconds",
            &[("model", "llama3.2:latest"), ("quantile", "0.5")],
        )
        .unwrap();
    let p100 = m
        .get(
            "ollama_response_duration_seconds",
            &[("model", "llama3.2:latest"), ("quantile", "1")],
        )
        .unwrap();
    assert!(0.0 < p0 && p0 <= p50 && p50 <= p100, "{p0} {p50} {p100}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_counted_exactly() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let url = agent.url();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let model = format!("test-{}", i % 5);
            let stream = i % 2 == 0;
            let res = client
                .post(format!("{url}/api/chat"))
                .body(chat(&model, "count me in", stream).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = agent.metrics().await;
    for i in 0..5 {
        let model = format!("test-{i}:latest");
        let l = [("model", model.as_str())];
        assert_eq!(m.get("ollama_requests_total", &l), Some(40.0), "{model}");
        assert_eq!(m.get("ollama_requests_success", &l), Some(40.0), "{model}");
        assert_eq!(
            m.get("ollama_tokens_generated_total", &l),
            Some(200.0),
            "{model}"
        );
        assert_eq!(
            m.get("ollama_prompt_tokens_total", &l),
            Some(120.0),
            "{model}"
        );
    }
    assert_eq!(fake.stats().eval_tokens_sent, 1000);
}

#[tokio::test]
async fn instance_and_global_labels_are_on_every_series() {
    let fake = FakeOllama::start().await;
    let conf = common::ConfDir::new(
        "[global]\nhostname = \"box-1\"\n[global.labels]\nregion = \"eu\"\nservice = \"global-loses\"\n",
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n[instances.labels]\nservice = \"ollama\"\n",
            fake.url()
        ),
    );
    let agent = InProcess::start(conf).await;
    post(&agent, "/api/generate", generate("llama3.2", "hi", false)).await;
    let m = agent.metrics().await;
    let want = [
        ("agent_hostname", "box-1"),
        ("region", "eu"),
        ("service", "ollama"),
        ("model", "llama3.2:latest"),
    ];
    assert_eq!(m.get("ollama_requests_total", &want), Some(1.0));
    let series: Vec<&str> =
        m.0.lines()
            .filter(|l| l.starts_with("ollama_") && !l.starts_with('#'))
            // the agent's own reload gauges belong to no instance: global labels only
            .filter(|l| !l.starts_with("ollama_tap_config_"))
            .collect();
    assert!(series.len() > 100, "{}", m.0);
    for line in series {
        // The instance's `service` wins over the global one; the global `region` is added.
        for label in [
            "agent_hostname=\"box-1\"",
            "region=\"eu\"",
            "service=\"ollama\"",
        ] {
            assert_eq!(line.matches(label).count(), 1, "{label} in {line}");
        }
        assert!(!line.contains("global-loses"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_run_side_by_side_with_their_own_labels_and_counts() {
    let a = FakeOllama::start().await;
    let b = FakeOllama::start().await;
    let conf = common::ConfDir::new(
        "[global]\nhostname = \"h\"\n",
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n[instances.labels]\ngpu = \"a\"\n\
             [[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n[instances.labels]\ngpu = \"b\"\n",
            a.url(),
            b.url()
        ),
    );
    let agent = InProcess::start(conf).await;
    assert_eq!(agent.addrs.len(), 2);
    let client = reqwest::Client::new();
    for (addr, n) in [(agent.addrs[0], 1), (agent.addrs[1], 2)] {
        for _ in 0..n {
            let res = client
                .post(format!("http://{addr}/api/generate"))
                .body(generate("llama3.2", "x", false).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    }
    assert_eq!(a.stats().eval_tokens_sent, 5);
    assert_eq!(b.stats().eval_tokens_sent, 10);
    for (addr, gpu, n) in [(agent.addrs[0], "a", 1.0), (agent.addrs[1], "b", 2.0)] {
        let m = Metrics(
            reqwest::get(format!("http://{addr}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(
            m.get(
                "ollama_requests_total",
                &[("model", "llama3.2:latest"), ("gpu", gpu)]
            ),
            Some(n),
            "{}",
            m.0
        );
        assert!(!m
            .0
            .contains(if gpu == "a" { "gpu=\"b\"" } else { "gpu=\"a\"" }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_check_exports_version_and_loaded_models() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    // The check runs at start; wait for its result, not for the clock.
    let m = common::wait_metrics(&agent.url(), |m| {
        m.get(
            "ollama_loaded_model_vram_bytes",
            &[("model", "llama3.2:latest")],
        )
        .is_some()
    })
    .await;
    assert_eq!(m.get("ollama_up", &[]), Some(1.0));
    assert_eq!(
        m.get("ollama_backend_info", &[("version", "0.12.6")]),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "ollama_loaded_model_size_bytes",
            &[("model", "llama3.2:latest")]
        ),
        Some(3_325_000_000.0),
        "the fake's /api/ps"
    );
    assert_eq!(
        m.get(
            "ollama_loaded_model_vram_bytes",
            &[("model", "llama3.2:latest")]
        ),
        Some(3_325_000_000.0),
        "the fake's /api/ps"
    );
    assert_eq!(
        m.get(
            "ollama_loaded_model_context_length",
            &[("model", "llama3.2:latest")]
        ),
        Some(4096.0),
        "the fake's /api/ps"
    );
    // Only the two GETs of the check reached the backend, both of them (once per interval):
    // no inference of the agent's own.
    let paths = fake.stats().paths;
    let distinct: std::collections::BTreeSet<&str> = paths.iter().map(String::as_str).collect();
    assert_eq!(
        distinct.into_iter().collect::<Vec<_>>(),
        ["GET /api/ps", "GET /api/version"],
        "{paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_instance_sends_nothing_of_its_own_and_learns_up_from_traffic() {
    let fake = FakeOllama::start().await;
    // A second, active instance on the same interval is the clock: once it has run two checks,
    // the passive one has had a whole interval to make a request of its own.
    let witness = FakeOllama::start().await;
    let agent = InProcess::start(common::ConfDir::new(
        "[global]\nhostname = \"test-host\"\ninterval = 1\n",
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\npassive = true\n\n\
             [[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n",
            fake.url(),
            witness.url()
        ),
    ))
    .await;
    witness
        .wait_until(common::WAIT, |s| {
            s.paths.iter().filter(|p| *p == "GET /api/version").count() >= 2
        })
        .await;
    assert_eq!(fake.stats().requests, 0, "{:?}", fake.stats().paths);
    assert_eq!(agent.metrics().await.get("ollama_up", &[]), Some(0.0));
    post(&agent, "/api/generate", generate("llama3.2", "x", false)).await;
    assert_eq!(agent.metrics().await.get("ollama_up", &[]), Some(1.0));
    assert_eq!(fake.stats().requests, 1);
}
