//! The client families through the whole store: what counts, the cap, the model label, and
//! the exposition of hostile values.

use std::time::Duration;

use crate::exposition::render;
use crate::snapshot::Family;
use crate::store::{Store, DEFAULT_WINDOW};
use crate::vocab::{Endpoint, Outcome, Record, Usage, OTHER_CLIENT, UNKNOWN_CLIENT};

fn rec<'a>(client: Option<&'a str>, model: &'a str) -> Record<'a> {
    Record {
        model,
        endpoint: Endpoint::Chat,
        outcome: Outcome::Http(200),
        load_only: false,
        usage: Usage {
            prompt_tokens: Some(3),
            completion_tokens: Some(5),
            ..Usage::default()
        },
        finish_reason: None,
        duration: Duration::from_millis(250),
        ttft: None,
        client,
    }
}

/// The series of family `name` as `client model value`, in snapshot order.
fn dump(fams: &[Family], name: &str) -> Vec<String> {
    let f = fams
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name}"));
    f.series
        .iter()
        .map(|s| {
            let l: Vec<&str> = s.labels.iter().map(|(_, v)| v.as_str()).collect();
            assert_eq!(
                s.labels.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
                ["client", "model"]
            );
            format!("{} {}", l.join(" "), s.value)
        })
        .collect()
}

const FAMILIES: [&str; 4] = [
    "ollama_client_requests_total",
    "ollama_client_prompt_tokens_total",
    "ollama_client_generated_tokens_total",
    "ollama_client_request_duration_seconds_total",
];

#[test]
fn without_client_attribution_no_client_family_is_exported() {
    let store = Store::new(DEFAULT_WINDOW);
    store.record(&rec(Some("alice"), "m"));
    let fams = store.snapshot();
    assert!(
        fams.iter().all(|f| !f.name.starts_with("ollama_client_")),
        "{:?}",
        fams.iter().map(|f| f.name).collect::<Vec<_>>()
    );
}

#[test]
fn with_client_attribution_the_four_families_are_counters_empty_until_a_request() {
    let store = Store::new(DEFAULT_WINDOW).count_clients(5);
    let fams = store.snapshot();
    for name in FAMILIES {
        let f = fams.iter().find(|f| f.name == name).expect(name);
        assert_eq!(f.kind, crate::snapshot::Kind::Counter, "{name}");
        assert!(f.series.is_empty(), "{name}");
    }
}

#[test]
fn tokens_count_for_successful_non_load_requests_and_duration_for_every_non_load_request() {
    let store = Store::new(DEFAULT_WINDOW).count_clients(5);
    store.record(&rec(Some("alice"), "m")); // success: all four
    store.record(&Record {
        outcome: Outcome::Http(500),
        ..rec(Some("alice"), "m")
    }); // failure: request and duration, no tokens
    store.record(&Record {
        load_only: true,
        ..rec(Some("alice"), "m")
    }); // load-only: the request only
    store.record(&Record {
        outcome: Outcome::ClientAborted,
        duration: Duration::from_millis(500),
        ..rec(Some("alice"), "m")
    });
    let f = store.snapshot();
    assert_eq!(dump(&f, FAMILIES[0]), ["alice m 4"]);
    assert_eq!(dump(&f, FAMILIES[1]), ["alice m 3"]);
    assert_eq!(dump(&f, FAMILIES[2]), ["alice m 5"]);
    assert_eq!(dump(&f, FAMILIES[3]), ["alice m 1"]); // 0.25 + 0.25 + 0.5
                                                      // the same figures as the per-model families count
    let per_model = |name: &str| f.iter().find(|x| x.name == name).unwrap().series[0].value;
    assert_eq!(per_model("ollama_requests_total"), 4.0);
    assert_eq!(per_model("ollama_prompt_tokens_total"), 3.0);
    assert_eq!(per_model("ollama_tokens_generated_total"), 5.0);
    let sum = f
        .iter()
        .find(|x| x.name == "ollama_request_duration_seconds")
        .unwrap()
        .series
        .iter()
        .find(|s| s.suffix == "_sum")
        .unwrap()
        .value;
    assert!((sum - 1.0).abs() < 1e-9, "{sum}");
}

#[test]
fn requests_that_name_no_client_count_as_unknown() {
    let store = Store::new(DEFAULT_WINDOW).count_clients(5);
    store.record(&rec(None, "m"));
    store.record(&rec(None, "m"));
    store.record(&rec(Some("bob"), "m"));
    let f = store.snapshot();
    assert_eq!(dump(&f, FAMILIES[0]), ["bob m 1", "unknown m 2"]);
}

#[test]
fn past_max_clients_new_clients_count_as_other_and_known_ones_keep_their_label() {
    let store = Store::new(DEFAULT_WINDOW).count_clients(2);
    for c in ["a", "b", "c", "d", "a", "c"] {
        store.record(&rec(Some(c), "m"));
    }
    // unknown and other do not take a place under the cap
    store.record(&rec(None, "m"));
    store.record(&rec(Some("b"), "n")); // a known client on a new model keeps its label
    store.record(&rec(Some("e"), "n"));
    let f = store.snapshot();
    assert_eq!(
        dump(&f, FAMILIES[0]),
        [
            "a m 2",
            "b m 1",
            "b n 1",
            "other m 3",
            "other n 1",
            "unknown m 1"
        ]
    );
    assert_eq!(store.clients.as_ref().unwrap().len(), 4);
    // every request is counted somewhere
    let total: f64 = f
        .iter()
        .find(|x| x.name == FAMILIES[0])
        .unwrap()
        .series
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 9.0);
}

#[test]
fn a_cap_of_zero_counts_every_named_client_as_other() {
    let store = Store::new(DEFAULT_WINDOW).count_clients(0);
    store.record(&rec(Some("a"), "m"));
    store.record(&rec(None, "m"));
    let f = store.snapshot();
    assert_eq!(dump(&f, FAMILIES[0]), ["other m 1", "unknown m 1"]);
}

#[test]
fn the_model_label_is_the_one_the_per_model_families_use() {
    let store = Store::with_max_models(DEFAULT_WINDOW, 1).count_clients(5);
    store.record(&rec(Some("a"), "m1"));
    store.record(&rec(Some("a"), "m2")); // past max_models
    store.record(&Record {
        outcome: Outcome::Http(404),
        ..rec(Some("a"), "no-such-model")
    });
    // through an in-flight guard too (the path the tap takes)
    let begun = store.begin("m1");
    store.finish(begun, &rec(Some("a"), "m1"));
    let begun = store.begin("m3");
    store.finish(begun, &rec(Some("a"), "m3"));
    let f = store.snapshot();
    assert_eq!(dump(&f, FAMILIES[0]), ["a m1 2", "a other 3"]);
    let models: Vec<&str> = f
        .iter()
        .find(|x| x.name == "ollama_requests_total")
        .unwrap()
        .series
        .iter()
        .map(|s| s.labels[0].1.as_str())
        .collect();
    assert_eq!(models, ["m1", "other"]);
}

#[test]
fn client_values_with_quotes_backslashes_and_newlines_are_escaped_in_the_exposition() {
    // The proxy replaces control characters and cuts values before they get here; the
    // exposition must still be right for whatever label it is given.
    let store = Store::new(DEFAULT_WINDOW).count_clients(5);
    let hostile = format!("a\"b\\c\nd{}", "x".repeat(10_000));
    store.record(&rec(Some(&hostile), "m"));
    let mut text = String::new();
    render(&store.snapshot(), &mut text);
    let line = text
        .lines()
        .find(|l| l.starts_with("ollama_client_requests_total{"))
        .unwrap();
    let want = format!(
        "ollama_client_requests_total{{client=\"a\\\"b\\\\c\\nd{}\",model=\"m\"}} 1",
        "x".repeat(10_000)
    );
    assert_eq!(line, want);
    assert_eq!(text.lines().filter(|l| l.contains("xxxx")).count(), 4);
}

#[test]
fn the_unknown_and_other_labels_are_the_vocabularys() {
    assert_eq!((UNKNOWN_CLIENT, OTHER_CLIENT), ("unknown", "other"));
}

#[test]
fn concurrent_records_of_new_pairs_lose_nothing() {
    let store = std::sync::Arc::new(Store::new(DEFAULT_WINDOW).count_clients(8));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let client = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][(t + i) % 10];
                    let model = ["m", "n"][i % 2];
                    store.record(&rec(Some(client), model));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let f = store.snapshot();
    let series = &f.iter().find(|x| x.name == FAMILIES[0]).unwrap().series;
    assert_eq!(series.iter().map(|s| s.value).sum::<f64>(), 4000.0);
    let clients: std::collections::BTreeSet<&str> =
        series.iter().map(|s| s.labels[0].1.as_str()).collect();
    assert_eq!(clients.len(), 9, "8 named and other: {clients:?}");
    assert!(clients.contains("other"));
}
