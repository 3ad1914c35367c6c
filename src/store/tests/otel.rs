//! Tests of the OpenTelemetry GenAI families (`otel_semconv = true`).

use super::*;
use crate::snapshot::Series;

fn series<'a>(fams: &'a [Family], name: &str) -> Vec<&'a Series> {
    fams.iter()
        .find(|f| f.name == name)
        .map(|f| f.series.iter().collect())
        .unwrap_or_default()
}

fn value(fams: &[Family], name: &str, suffix: &str, want: &[(&str, &str)]) -> Option<f64> {
    series(fams, name)
        .into_iter()
        .find(|s| {
            s.suffix == suffix
                && s.labels.len() == want.len()
                && want
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}

const CHAT: [(&str, &str); 4] = [
    ("gen_ai_operation_name", "chat"),
    ("gen_ai_provider_name", "ollama"),
    ("gen_ai_request_model", "m"),
    ("gen_ai_response_model", "m"),
];

fn traffic(store: &Store) {
    let streamed = |endpoint, prompt, eval| Record {
        endpoint,
        ttft: Some(Duration::from_millis(50)),
        ..ok("m", prompt, eval, 500)
    };
    store.record(&streamed(Endpoint::Chat, 10, 30));
    store.record(&streamed(Endpoint::OpenAiChat, 20, 50));
    store.record(&Record {
        endpoint: Endpoint::Generate,
        ..ok("m", 7, 9, 200)
    });
    store.record(&failed("m", Outcome::StreamError, 100));
    store.record(&failed("m", Outcome::Http(500), 100));
    store.record(&failed("m", Outcome::Http(500), 300));
}

#[test]
fn operations_add_up_their_endpoints_and_failures_carry_error_type() {
    let store = Store::new(10).with_otel(true);
    traffic(&store);
    let f = store.snapshot();
    let d = "gen_ai_client_operation_duration_seconds";
    // /api/chat and /v1/chat/completions are both "chat": 2 successes
    assert_eq!(value(&f, d, "_count", &CHAT), Some(2.0));
    assert_eq!(value(&f, d, "_sum", &CHAT), Some(1.0));
    let mut err = CHAT.to_vec();
    err.push(("error_type", "500"));
    assert_eq!(value(&f, d, "_count", &err), Some(2.0));
    assert_eq!(value(&f, d, "_sum", &err), Some(0.4));
    err[4] = ("error_type", "stream_error");
    assert_eq!(value(&f, d, "_count", &err), Some(1.0));
    let mut gen = CHAT;
    gen[0] = ("gen_ai_operation_name", "text_completion");
    assert_eq!(value(&f, d, "_count", &gen), Some(1.0));
    // the convention's 14 bounds + +Inf
    let buckets = series(&f, d)
        .into_iter()
        .filter(|s| s.suffix == "_bucket" && s.labels.len() == 5 && s.labels[0].1 == "chat")
        .count();
    assert_eq!(buckets, 15);

    let t = "gen_ai_client_token_usage";
    let mut input = CHAT.to_vec();
    input.push(("gen_ai_token_type", "input"));
    assert_eq!(value(&f, t, "_sum", &input), Some(30.0));
    assert_eq!(value(&f, t, "_count", &input), Some(2.0));
    let mut output = CHAT.to_vec();
    output.push(("gen_ai_token_type", "output"));
    assert_eq!(value(&f, t, "_sum", &output), Some(80.0));
    // 30 and 50 output tokens: both in le=64
    let mut le = output.clone();
    le.push(("le", "16"));
    assert_eq!(value(&f, t, "_bucket", &le), Some(0.0));
    le[5] = ("le", "64");
    assert_eq!(value(&f, t, "_bucket", &le), Some(2.0));

    assert_eq!(
        value(
            &f,
            "gen_ai_server_time_to_first_token_seconds",
            "_count",
            &CHAT
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &f,
            "gen_ai_server_time_per_output_token_seconds",
            "_count",
            &CHAT
        ),
        Some(2.0)
    );
    // not streamed: no TTFT series for text_completion
    assert_eq!(
        value(
            &f,
            "gen_ai_server_time_to_first_token_seconds",
            "_count",
            &gen
        ),
        None
    );
}

#[test]
fn token_usage_and_successful_duration_share_every_label_but_the_token_type() {
    let store = Store::new(10).with_otel(true);
    traffic(&store);
    let f = store.snapshot();
    let set = |s: &Series, drop: &str| {
        let mut l: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| k != drop)
            .cloned()
            .collect();
        l.sort();
        l
    };
    let tokens: std::collections::BTreeSet<_> = series(&f, "gen_ai_client_token_usage")
        .into_iter()
        .filter(|s| s.suffix == "_count")
        .map(|s| set(s, "gen_ai_token_type"))
        .collect();
    let ok: std::collections::BTreeSet<_> = series(&f, "gen_ai_client_operation_duration_seconds")
        .into_iter()
        .filter(|s| s.suffix == "_count" && !s.labels.iter().any(|(k, _)| k == "error_type"))
        .map(|s| set(s, ""))
        .collect();
    assert_eq!(tokens, ok);
    assert_eq!(tokens.len(), 2, "chat and text_completion");
}

#[test]
fn the_ollama_families_are_unchanged_and_the_gen_ai_ones_absent_by_default() {
    let plain = Store::new(10);
    let otel = Store::new(10).with_otel(true);
    traffic(&plain);
    traffic(&otel);
    let (a, b) = (plain.snapshot(), otel.snapshot());
    assert!(a.iter().all(|f| !f.name.starts_with("gen_ai_")));
    assert_eq!(b.len(), a.len() + 4);
    assert_eq!(a[..], b[..a.len()]);
    // the request duration still counts successes and failures alike
    let all = value(
        &a,
        "ollama_request_duration_seconds",
        "_count",
        &[("model", "m"), ("endpoint", "/api/chat")],
    );
    assert_eq!(all, Some(4.0));
}

#[test]
fn a_model_streamed_on_one_endpoint_costs_86_gen_ai_series() {
    let store = Store::new(10).with_otel(true);
    store.record(&Record {
        ttft: Some(Duration::from_millis(50)),
        ..ok("m", 10, 30, 500)
    });
    let f = store.snapshot();
    let n: usize = f
        .iter()
        .filter(|f| f.name.starts_with("gen_ai_"))
        .map(|f| f.series.len())
        .sum();
    // duration 14 + 3, token usage 2 × (14 + 3), TTFT 16 + 3, TPOT 13 + 3 (README)
    assert_eq!(n, 17 + 34 + 19 + 16);
}
