//! The real Python clients, `ollama` and `openai` from PyPI, work unchanged through the agent,
//! and the agent's counters equal what those clients saw in the answers.
//!
//! `tests/python/clients.py` makes a fixed mix of calls (its docstring lists them) and prints
//! what the clients observed; this test compares that with `/metrics` and with the fake
//! backend's own tally. Needs `python3 -m pip install ollama openai` (scripts/test.sh installs
//! them); the test fails, never skips, without them.

use crate::common;

use std::collections::BTreeMap;

use common::fake_ollama::FakeOllama;
use common::python::{model_label as label, report};
use common::{InProcess, Metrics};
use serde::Deserialize;

/// What `clients.py` prints.
#[derive(Debug, Deserialize)]
struct Report {
    versions: BTreeMap<String, String>,
    calls: Vec<Call>,
}

/// One client call, as the client saw it.
#[derive(Debug, Deserialize)]
struct Call {
    client: String,
    call: String,
    stream: bool,
    /// The model name the client sent.
    model: String,
    /// Every HTTP exchange of the call: method, path, status.
    http: Vec<(String, String, u16)>,
    /// Counts carried by the answer (null when it carries none).
    prompt_tokens: Option<u64>,
    eval_tokens: Option<u64>,
    /// Final object / finish_reason seen.
    completed: bool,
}

/// Sum of every series of `name`, whatever the labels.
fn sum_all(m: &Metrics, name: &str) -> f64 {
    m.0.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let n = series.split('{').next()?;
            (n == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[derive(Debug, Default, PartialEq)]
struct PerModel {
    total: f64,
    success: f64,
    failed: f64,
    prompt: f64,
    generated: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_work_through_the_agent_and_counts_match() {
    let fake = FakeOllama::start().await;
    let agent = InProcess::single(&fake.url()).await;
    let out = report("clients.py", &agent.url()).await;
    let report: Report = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "clients.py printed no report ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    let calls = &report.calls;
    let ctx = format!("python clients {:?}", report.versions);

    // The clients: 11 calls, one HTTP exchange each, every stream read to its end, the 404 the
    // only failure.
    assert_eq!(calls.len(), 11, "{ctx}: {calls:#?}");
    for c in calls {
        assert_eq!(c.http.len(), 1, "{ctx}: {c:?}");
        let ok = c.model != "no-such-model";
        assert_eq!(c.http[0].2 == 200 && c.completed, ok, "{ctx}: {c:?}");
    }
    let unknown = calls.iter().find(|c| c.model == "no-such-model").unwrap();
    assert_eq!(unknown.http[0].2, 404, "{ctx}: {unknown:?}");
    // The one answer that carries no counts: a /v1 stream without include_usage.
    let no_counts: Vec<&Call> = calls
        .iter()
        .filter(|c| c.http[0].2 == 200 && c.prompt_tokens.is_none())
        .collect();
    assert_eq!(no_counts.len(), 1, "{ctx}: {no_counts:?}");
    assert_eq!(
        (no_counts[0].client.as_str(), no_counts[0].call.as_str()),
        ("openai", "chat.completions")
    );
    assert!(no_counts[0].stream);

    // The agent forwarded each call once, to the same path, in order.
    let posted: Vec<String> = fake
        .stats()
        .paths
        .into_iter()
        .filter(|p| p.starts_with("POST "))
        .collect();
    let sent: Vec<String> = calls
        .iter()
        .flat_map(|c| c.http.iter().map(|(m, p, _)| format!("{m} {p}")))
        .collect();
    assert_eq!(posted, sent, "{ctx}");

    // What the agent should say, per model, from what the clients saw.
    let mut want: BTreeMap<String, PerModel> = BTreeMap::new();
    let mut want_endpoints: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for c in calls {
        let w = want.entry(label(&c.model)).or_default();
        let (_, path, status) = &c.http[0];
        w.total += 1.0;
        if (200..300).contains(status) && c.completed {
            w.success += 1.0;
        } else {
            w.failed += 1.0;
        }
        w.prompt += c.prompt_tokens.unwrap_or(0) as f64;
        w.generated += c.eval_tokens.unwrap_or(0) as f64;
        *want_endpoints
            .entry((label(&c.model), path.clone(), status.to_string()))
            .or_default() += 1.0;
    }
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        [
            "llama3.2:latest",
            "nomic-embed-text:latest",
            "other",
            "qwen2.5:0.5b"
        ],
        "{ctx}"
    );

    // The settled scrape: nothing in flight, so every call the clients finished is recorded.
    let m = agent.metrics().await;
    assert_eq!(
        sum_all(&m, "ollama_requests_success") + sum_all(&m, "ollama_requests_failed"),
        calls.len() as f64,
        "{}",
        m.0
    );

    for (model, w) in &want {
        let l = [("model", model.as_str())];
        // Every series present (a missing one is not a zero).
        let get = |name: &str| {
            m.get(name, &l)
                .unwrap_or_else(|| panic!("no {name} {l:?}\n{}", m.0))
        };
        let got = PerModel {
            total: get("ollama_requests_total"),
            success: get("ollama_requests_success"),
            failed: get("ollama_requests_failed"),
            prompt: get("ollama_prompt_tokens_total"),
            generated: get("ollama_tokens_generated_total"),
        };
        assert_eq!(&got, w, "{ctx}: model {model}\n{}", m.0);
    }
    // No series under another model name (e.g. the un-normalised `llama3.2`).
    assert_eq!(
        sum_all(&m, "ollama_requests_total"),
        calls.len() as f64,
        "{}",
        m.0
    );

    // Per endpoint and HTTP status, exactly the calls made.
    for ((model, endpoint, outcome), n) in &want_endpoints {
        let l = [
            ("model", model.as_str()),
            ("endpoint", endpoint.as_str()),
            ("outcome", outcome.as_str()),
        ];
        assert_eq!(
            m.get("ollama_endpoint_requests_total", &l),
            Some(*n),
            "{ctx}: {l:?}\n{}",
            m.0
        );
    }
    assert_eq!(
        sum_all(&m, "ollama_endpoint_requests_total"),
        calls.len() as f64,
        "{}",
        m.0
    );

    // Against the backend's own tally. The fake adds to `eval_tokens_sent`/`prompt_tokens_sent`
    // only the counts it put on the wire: native final objects, /api/embed, and /v1 `usage`
    // objects (a /v1 stream only with include_usage). So the tokens the fake sent where the agent
    // is not expected to count them are none in this mix: the /v1 stream without include_usage
    // put no count on the wire (the fake credits nothing for it; its real length, 5 tokens, is
    // known to nobody), and the 404 carries none. Hence:
    //   sum over models of the agent's counter == fake's tally - 0 == what the clients saw.
    let stats = fake.stats();
    let not_expected_to_count = 0;
    let clients_eval: u64 = calls.iter().filter_map(|c| c.eval_tokens).sum();
    let clients_prompt: u64 = calls.iter().filter_map(|c| c.prompt_tokens).sum();
    assert_eq!(
        stats.eval_tokens_sent - not_expected_to_count,
        clients_eval,
        "{ctx}"
    );
    assert_eq!(
        stats.prompt_tokens_sent - not_expected_to_count,
        clients_prompt,
        "{ctx}"
    );
    assert_eq!(
        sum_all(&m, "ollama_tokens_generated_total"),
        (stats.eval_tokens_sent - not_expected_to_count) as f64,
        "{}",
        m.0
    );
    assert_eq!(
        sum_all(&m, "ollama_prompt_tokens_total"),
        (stats.prompt_tokens_sent - not_expected_to_count) as f64,
        "{}",
        m.0
    );
    // The script's documented numbers, so a change in the mix is a conscious one.
    assert_eq!(
        (clients_prompt, clients_eval),
        (30, 39),
        "{ctx}: {calls:#?}"
    );

    agent.stop().await;
}
