//! Per-client attribution end to end: the real binary in front of the fake Ollama, driven by
//! the real `ollama` and `openai` Python clients (`tests/python/client_attribution.py`) and by
//! plain requests. Counts per (client, model) are exact, the precedence is docs/metrics.md's, the
//! cap and hashing hold, API keys and (with `client_hash`) e-mail addresses appear nowhere, and
//! hostile values are bounded, escaped and accepted by `promtool check metrics`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::fake_ollama::FakeOllama;
use common::promtool::{check_metrics, kept_name_findings};
use common::python::{model_label, report};
use common::{Binary, Metrics};
use serde::Deserialize;

/// The client families.
const REQUESTS: &str = "ollama_client_requests_total";
const PROMPT: &str = "ollama_client_prompt_tokens_total";
const GENERATED: &str = "ollama_client_generated_tokens_total";
const DURATION: &str = "ollama_client_request_duration_seconds_total";

/// `printf %s alice@example.com | sha256sum | cut -c1-12`
const ALICE_HASH: &str = "hash-ff8d9819fc0e";

/// What `client_attribution.py` prints.
#[derive(Debug, Deserialize)]
struct Report {
    versions: BTreeMap<String, String>,
    /// The API keys the clients sent.
    secrets: Vec<String>,
    calls: Vec<Call>,
}

/// One client call, as the client saw it.
#[derive(Debug, Deserialize)]
struct Call {
    client: String,
    call: String,
    model: String,
    /// The client label the documented precedence (docs/metrics.md) gives this call.
    expect: String,
    http: Vec<(String, String, u16)>,
    prompt_tokens: Option<u64>,
    eval_tokens: Option<u64>,
    completed: bool,
}

/// Requests, prompt tokens and generated tokens of one (client, model) pair.
type Counts = (f64, f64, f64);

/// Every series of `name` as its `client` and `model` label values (escapes undone) → value.
fn client_series(m: &Metrics, name: &str) -> BTreeMap<(String, String), f64> {
    m.0.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .map(|mut rest| {
            let mut labels = BTreeMap::new();
            loop {
                let (key, after) = rest.split_once("=\"").expect(rest);
                let (value, after) = unescape_label(after);
                labels.insert(key.to_owned(), value);
                match after.strip_prefix(',') {
                    Some(more) => rest = more,
                    None => {
                        rest = after.strip_prefix("} ").expect(after);
                        break;
                    }
                }
            }
            let value = rest.parse().unwrap();
            ((labels["client"].clone(), labels["model"].clone()), value)
        })
        .collect()
}

/// A label value up to its closing quote, escapes (`\\`, `\"`, `\n`) undone, and the rest
/// after the quote.
fn unescape_label(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => panic!("a label value ends in a backslash: {s}"),
            },
            c => out.push(c),
        }
    }
    panic!("an unterminated label value: {s}")
}

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut req = reqwest::Client::new().post(url).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    res.bytes().await.unwrap();
    status
}

/// The real binary in front of its own fake Ollama, with these instance options.
async fn agent(options: &str) -> (FakeOllama, Binary) {
    let fake = FakeOllama::start().await;
    let agent = Binary::single(&fake.url(), options).await;
    (fake, agent)
}

fn generate(model: &str) -> String {
    format!(r#"{{"model":"{model}","prompt":"hi [[tokens:2]]","stream":false}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_counts_through_the_real_ollama_and_openai_clients_are_exact() {
    let (_fake, agent) = agent(
        "client_headers = [\"X-OpenWebUI-User-Email\", \"X-User\"]\n\
         client_from_body = true\nclient_from_api_key = true",
    )
    .await;
    let out = report("client_attribution.py", &agent.url()).await;
    let report: Report = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!("no report ({e}):\n{}", String::from_utf8_lossy(&out));
    });
    let ctx = format!("python clients {:?}", report.versions);
    let calls = &report.calls;
    assert_eq!(calls.len(), 14, "{ctx}: {calls:#?}");
    for c in calls {
        let what = format!("{ctx}: {} {}: {c:?}", c.client, c.call);
        assert_eq!(c.http.len(), 1, "{what}");
        let ok = c.model != "no-such-model";
        assert_eq!(c.http[0].2 == 200 && c.completed, ok, "{what}");
    }

    // What the agent should say per (client, model), from what the clients saw.
    let mut want: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for c in calls {
        let w = want
            .entry((c.expect.clone(), model_label(&c.model)))
            .or_default();
        w.0 += 1.0;
        w.1 += c.prompt_tokens.unwrap_or(0) as f64;
        w.2 += c.eval_tokens.unwrap_or(0) as f64;
    }
    let clients: BTreeSet<&str> = want.keys().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        clients.len(),
        7,
        "alice, bob, dave, erin, two keys, unknown: {clients:?}"
    );

    let m = agent.metrics().await;
    let requests = client_series(&m, REQUESTS);
    let prompt = client_series(&m, PROMPT);
    let generated = client_series(&m, GENERATED);
    let durations = client_series(&m, DURATION);
    let got: BTreeMap<(String, String), Counts> = requests
        .iter()
        .map(|(k, &n)| (k.clone(), (n, prompt[k], generated[k])))
        .collect();
    assert_eq!(got, want, "{ctx}\n{}", m.0);
    assert_eq!(
        durations.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, d) in &durations {
        assert!(*d > 0.0, "{k:?}: {d}");
    }

    // Counted as the per-model families count, under the same model labels.
    let models: BTreeSet<&str> = want.keys().map(|(_, m)| m.as_str()).collect();
    for model in models {
        let of = |series: &BTreeMap<(String, String), f64>| -> f64 {
            series
                .iter()
                .filter(|((_, m), _)| m == model)
                .map(|(_, v)| v)
                .sum()
        };
        let l = [("model", model)];
        assert_eq!(
            of(&requests),
            m.value("ollama_requests_total", &l),
            "{model}"
        );
        assert_eq!(
            of(&prompt),
            m.value("ollama_prompt_tokens_total", &l),
            "{model}"
        );
        assert_eq!(
            of(&generated),
            m.value("ollama_tokens_generated_total", &l),
            "{model}"
        );
        let per_model = m.sum("ollama_request_duration_seconds_sum", &l);
        let diff = (of(&durations) - per_model).abs();
        assert!(
            diff < 1e-6 * per_model.max(1.0),
            "{model}: {per_model} vs {diff}"
        );
    }

    // The API keys are nowhere: not in /metrics, not in the log.
    for secret in &report.secrets {
        assert!(!m.0.contains(secret.as_str()), "{secret} in /metrics");
        assert!(
            !agent.logs().contains(secret.as_str()),
            "{secret} in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_clients_new_clients_count_as_other_and_the_cap_is_logged_once() {
    let (_fake, agent) = agent("client_headers = [\"X-User\"]\nmax_clients = 2").await;
    let url = format!("{}/api/generate", agent.url());
    for client in ["a", "b", "c", "d", "a", "c", "b"] {
        assert_eq!(
            post(&url, &[("X-User", client)], &generate("llama3.2")).await,
            200
        );
    }
    assert_eq!(post(&url, &[], &generate("llama3.2")).await, 200);
    assert_eq!(
        post(&url, &[("X-User", "e")], &generate("qwen2.5:0.5b")).await,
        200
    );
    let m = agent.metrics().await;
    let got: Vec<(String, String, f64)> = client_series(&m, REQUESTS)
        .into_iter()
        .map(|((c, model), n)| (c, model, n))
        .collect();
    let row = |c: &str, model: &str, n| (c.to_owned(), model.to_owned(), n);
    assert_eq!(
        got,
        [
            row("a", "llama3.2:latest", 2.0),
            row("b", "llama3.2:latest", 2.0),
            row("other", "llama3.2:latest", 3.0),
            row("other", "qwen2.5:0.5b", 1.0),
            row("unknown", "llama3.2:latest", 1.0),
        ],
        "{}",
        m.0
    );
    let logs = agent.logs();
    assert_eq!(
        logs.matches("client label cap reached").count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("max_clients=2"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_hash_the_email_is_nowhere_in_metrics_and_its_hash_is() {
    let (_fake, agent) = agent("client_headers = [\"X-OpenWebUI-User-Email\"]\nclient_from_body = true\nclient_hash = true").await;
    let base = agent.url();
    let email = ("X-OpenWebUI-User-Email", "alice@example.com");
    assert_eq!(
        post(
            &format!("{base}/api/generate"),
            &[email],
            &generate("llama3.2")
        )
        .await,
        200
    );
    let chat = r#"{"model":"llama3.2","user":"alice@example.com","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        post(&format!("{base}/v1/chat/completions"), &[], chat).await,
        200
    );
    let m = agent.metrics().await;
    let got = client_series(&m, REQUESTS);
    let want: BTreeMap<_, _> =
        [((ALICE_HASH.to_owned(), "llama3.2:latest".to_owned()), 2.0)].into();
    assert_eq!(got, want, "{}", m.0);
    for text in [&m.0, &agent.logs()] {
        assert!(!text.contains("alice"), "{text}");
        assert!(!text.contains("example.com"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_value_with_quotes_backslashes_a_newline_and_10_kb_is_cut_escaped_and_accepted_by_promtool(
) {
    let (_fake, agent) = agent("client_headers = [\"X-User\"]\nclient_from_body = true").await;
    let base = agent.url();
    // A header cannot carry a newline; quotes, backslashes and 10 KB it can.
    let header = format!("\"quoted\" \\back\\slash {}", "x".repeat(10_000));
    assert_eq!(
        post(
            &format!("{base}/api/generate"),
            &[("X-User", &header)],
            &generate("llama3.2")
        )
        .await,
        200
    );
    // The body's user can: a JSON escape.
    let user = format!("line1\nline2 \"q\" \\ {}", "y".repeat(10_000));
    let chat = serde_json::json!({
        "model": "llama3.2",
        "user": user,
        "messages": [{"role": "user", "content": "hi"}],
    });
    assert_eq!(
        post(
            &format!("{base}/v1/chat/completions"),
            &[],
            &chat.to_string()
        )
        .await,
        200
    );

    let m = agent.metrics().await;
    let got: Vec<String> = client_series(&m, REQUESTS)
        .into_keys()
        .map(|(client, _)| client)
        .collect();
    let cut = |s: &str| s.replace('\n', "_")[..128].to_owned();
    assert_eq!(got, [cut(&header), cut(&user)], "{}", m.0);
    // As written on the wire: quotes and backslashes escaped, no raw newline in any label.
    let line =
        m.0.lines()
            .find(|l| l.starts_with(REQUESTS) && l.contains("quoted"))
            .unwrap();
    assert!(
        line.contains(r#",client="\"quoted\" \\back\\slash xxx"#),
        "{line}"
    );
    assert!(m.0.lines().all(|l| l.len() < 1000), "no 10 KB line");

    let (findings, code, report) = check_metrics(&m.0);
    assert_eq!(
        findings,
        kept_name_findings(),
        "promtool found problems:\n{report}\n---\n{}",
        m.0
    );
    assert_eq!(code, Some(3), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_option_no_client_series_is_exported() {
    let (_fake, agent) = agent("client_hash = true").await;
    let url = format!("{}/api/generate", agent.url());
    let headers = [
        ("X-User", "bob"),
        ("X-OpenWebUI-User-Email", "alice@example.com"),
        ("Authorization", "Bearer sk-carol-secret"),
    ];
    assert_eq!(post(&url, &headers, &generate("llama3.2")).await, 200);
    let m = agent.metrics().await;
    assert_eq!(
        m.value("ollama_requests_total", &[("model", "llama3.2:latest")]),
        1.0
    );
    assert!(!m.0.contains("ollama_client_"), "{}", m.0);
    assert!(!m.0.contains("client="), "{}", m.0);
}
