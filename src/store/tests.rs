//! Tests of the whole store: records in, families out.

use super::*;
use crate::snapshot::Kind;
use crate::vocab::{Endpoint, Usage};
use std::thread;

mod budget;
mod endpoint;
mod exposition;
mod in_flight;
mod otel;

fn u(prompt: u64, eval: u64) -> Usage {
    Usage {
        prompt_tokens: Some(prompt),
        completion_tokens: Some(eval),
        ..Usage::default()
    }
}

fn ok(model: &str, prompt: u64, eval: u64, ms: u64) -> Record<'_> {
    Record {
        model,
        endpoint: Endpoint::Chat,
        outcome: Outcome::Http(200),
        load_only: false,
        usage: u(prompt, eval),
        finish_reason: None,
        duration: Duration::from_millis(ms),
        ttft: None,
        client: None,
    }
}

fn failed(model: &str, outcome: Outcome, ms: u64) -> Record<'_> {
    Record {
        outcome,
        usage: Usage::default(),
        ..ok(model, 0, 0, ms)
    }
}

/// The series of family `name`, each as `suffix{k=v,...} value`.
fn dump(fams: &[Family], name: &str) -> Vec<String> {
    let f = fams.iter().find(|f| f.name == name).unwrap();
    let series = f.series.iter().map(|s| {
        let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}{{{}}} {}", s.suffix, l.join(","), s.value)
    });
    series.collect()
}

// --- the original plugin's families -------------------------------------------------------

#[test]
fn empty_store_has_every_family_in_order() {
    let store = Store::new(DEFAULT_WINDOW);
    let fams = store.snapshot();
    let got: Vec<_> = fams
        .iter()
        .map(|f| (f.name, f.kind, f.series.len()))
        .collect();
    let (c, s, g, h) = (Kind::Counter, Kind::Summary, Kind::Gauge, Kind::Histogram);
    let want = [
        ("ollama_up", g, 1),
        ("ollama_requests_total", c, 0),
        ("ollama_requests_success", c, 0),
        ("ollama_requests_failed", c, 0),
        ("ollama_tokens_generated_total", c, 0),
        ("ollama_prompt_tokens_total", c, 0),
        ("ollama_response_duration_seconds", s, 0),
        ("ollama_model_load_duration_seconds", s, 0),
        ("ollama_request_duration_seconds", h, 0),
        ("ollama_time_to_first_token_seconds", h, 0),
        ("ollama_time_per_output_token_seconds", h, 0),
        ("ollama_prompt_eval_duration_seconds", h, 0),
        ("ollama_load_duration_seconds", h, 0),
        ("ollama_generation_tokens_per_second", h, 0),
        ("ollama_queue_wait_seconds", h, 0),
        ("ollama_endpoint_requests_total", c, 0),
        ("ollama_prompt_cached_tokens_total", c, 0),
        ("ollama_finish_reason_total", c, 0),
        ("ollama_requests_in_flight", g, 0),
        ("ollama_backend_info", g, 0),
        ("ollama_loaded_model_size_bytes", g, 0),
        ("ollama_loaded_model_vram_bytes", g, 0),
        ("ollama_loaded_model_context_length", g, 0),
        // no labels: always present, 13 bounds + `+Inf` + `_sum` + `_count`
        ("ollama_tap_proxy_overhead_seconds", h, 16),
    ];
    assert_eq!(got, want);
    assert_eq!(fams.len(), families::COUNT);
    assert_eq!(dump(&fams, "ollama_up"), ["{} 0"]);
    assert_eq!(store.models(), 0);
}

#[test]
fn set_up_toggles_gauge() {
    let store = Store::new(10);
    store.set_up(true);
    assert_eq!(dump(&store.snapshot(), "ollama_up"), ["{} 1"]);
    store.set_up(false);
    assert_eq!(dump(&store.snapshot(), "ollama_up"), ["{} 0"]);
}

#[test]
fn counters_by_outcome_and_load_only() {
    let store = Store::new(10);
    store.record(&ok("m", 10, 20, 1500));
    let load = Some(250_000_000);
    store.record(&Record {
        usage: Usage {
            load_duration_ns: load,
            ..u(1, 2)
        },
        ..ok("m", 1, 2, 500)
    });
    // failed: counted, but no tokens or latency
    store.record(&Record {
        outcome: Outcome::Http(500),
        ..ok("m", 100, 100, 9000)
    });
    // load-only success: counted, but no tokens or latency
    let load = Some(9_000_000_000);
    store.record(&Record {
        load_only: true,
        usage: Usage {
            load_duration_ns: load,
            ..u(9, 9)
        },
        ..ok("m", 9, 9, 9000)
    });
    // absent token counts add nothing
    store.record(&Record {
        usage: Usage::default(),
        ..ok("m", 0, 0, 1000)
    });

    let f = store.snapshot();
    assert_eq!(dump(&f, "ollama_requests_total"), ["{model=m} 5"]);
    assert_eq!(dump(&f, "ollama_requests_success"), ["{model=m} 4"]);
    assert_eq!(dump(&f, "ollama_requests_failed"), ["{model=m} 1"]);
    assert_eq!(dump(&f, "ollama_tokens_generated_total"), ["{model=m} 22"]);
    assert_eq!(dump(&f, "ollama_prompt_tokens_total"), ["{model=m} 11"]);
    assert_eq!(
        dump(&f, "ollama_response_duration_seconds"),
        [
            "{model=m,quantile=0} 0.5",
            "{model=m,quantile=0.5} 1",
            "{model=m,quantile=0.95} 1.5",
            "{model=m,quantile=0.99} 1.5",
            "{model=m,quantile=1} 1.5",
            "_sum{model=m} 3",
            "_count{model=m} 3",
        ]
    );
    assert_eq!(
        dump(&f, "ollama_model_load_duration_seconds"),
        [
            "{model=m,quantile=0.5} 0.25",
            "{model=m,quantile=0.95} 0.25",
            "_sum{model=m} 0.25",
            "_count{model=m} 1",
        ]
    );
}

#[test]
fn no_observations_gives_zero_sum_and_count_only() {
    let store = Store::new(10);
    store.record(&ok("a", 1, 1, 100)); // success without load_duration
    store.record(&Record {
        outcome: Outcome::Http(500),
        ..ok("x", 5, 5, 100)
    });
    let f = store.snapshot();
    assert_eq!(
        dump(&f, "ollama_tokens_generated_total"),
        ["{model=a} 1", "{model=x} 0"]
    );
    let rd = dump(&f, "ollama_response_duration_seconds");
    assert_eq!(
        rd[5..],
        [
            "_sum{model=a} 0.1",
            "_count{model=a} 1",
            "_sum{model=x} 0",
            "_count{model=x} 0"
        ]
    );
    assert_eq!(
        dump(&f, "ollama_model_load_duration_seconds"),
        [
            "_sum{model=a} 0",
            "_count{model=a} 0",
            "_sum{model=x} 0",
            "_count{model=x} 0"
        ]
    );
}

#[test]
fn quantiles_over_window_sum_count_cumulative() {
    let store = Store::new(100);
    for ms in 1..=1000 {
        store.record(&ok("m", 0, 0, ms));
    }
    let f = store.snapshot();
    let rd = dump(&f, "ollama_response_duration_seconds");
    // the window holds 901..=1000 ms; _sum and _count cover all 1000
    let want = ["{model=m,quantile=0} 0.901", "{model=m,quantile=0.5} 0.95"];
    assert_eq!(rd[..2], want);
    assert_eq!(rd[4], "{model=m,quantile=1} 1");
    assert_eq!(rd[6], "_count{model=m} 1000");
    let sum = f[6].series[5].value;
    assert!((sum - 500.5).abs() < 1e-9, "{sum}");
}

#[test]
fn series_sorted_by_model() {
    let store = Store::new(10);
    for m in ["zeta", "alpha", "mid:7b", "alpha"] {
        store.record(&ok(m, 1, 1, 1));
    }
    assert_eq!(store.models(), 3);
    assert_eq!(
        dump(&store.snapshot(), "ollama_requests_total"),
        ["{model=alpha} 2", "{model=mid:7b} 1", "{model=zeta} 1"]
    );
}

#[test]
fn every_metered_endpoint_feeds_the_original_families() {
    let store = Store::new(10);
    for e in Endpoint::ALL {
        let usage = Usage {
            completion_tokens: e.generates().then_some(3),
            ..u(2, 0)
        };
        store.record(&Record {
            endpoint: e,
            usage,
            ..ok("m", 0, 0, 10)
        });
    }
    let f = store.snapshot();
    assert_eq!(dump(&f, "ollama_requests_total"), ["{model=m} 9"]);
    // six generating endpoints × 3; embeddings add None = 0
    assert_eq!(dump(&f, "ollama_tokens_generated_total"), ["{model=m} 18"]);
    assert_eq!(dump(&f, "ollama_prompt_tokens_total"), ["{model=m} 18"]);
    assert_eq!(
        dump(&f, "ollama_response_duration_seconds")[6],
        "_count{model=m} 9"
    );
}

// --- labels, concurrency --------------------------------------------------------------------

#[test]
fn model_labels_are_capped_and_404_names_get_none_of_their_own() {
    let store = Store::with_max_models(10, 2);
    store.record(&failed("typo", Outcome::Http(404), 1));
    store.record(&ok("a", 1, 1, 1));
    store.record(&ok("b", 1, 1, 1));
    store.record(&ok("c", 1, 1, 1));
    store.record(&failed("d", Outcome::Http(500), 1));
    store.record(&ok("a", 1, 1, 1));
    // "other" does not count toward the cap; a known model keeps its label on a later 404.
    store.record(&failed("a", Outcome::Http(404), 1));
    assert_eq!(
        dump(&store.snapshot(), "ollama_requests_total"),
        ["{model=a} 3", "{model=b} 1", "{model=other} 3"]
    );
    assert_eq!(store.models(), 3);
}

/// `threads` threads recording `per` requests each into `store`: models a, b and c in turn,
/// chat and embed alternately, one in ten a stream error; snapshots are taken meanwhile.
fn record_concurrently(store: &Arc<Store>, threads: u64, per: u64) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(store);
            thread::spawn(move || {
                for i in 0..per {
                    let model = ["a", "b", "c"][((t + i) % 3) as usize];
                    let endpoint = [Endpoint::Chat, Endpoint::Embed][(i % 2) as usize];
                    let rec = Record {
                        endpoint,
                        usage: Usage {
                            load_duration_ns: Some(1_000_000),
                            ..u(2, 3)
                        },
                        ttft: Some(Duration::from_micros(500)),
                        ..ok(model, 0, 0, 1)
                    };
                    store.record(&if i % 10 == 0 {
                        Record {
                            outcome: Outcome::StreamError,
                            ..rec
                        }
                    } else {
                        rec
                    });
                    store.observe_overhead(Duration::from_micros(20));
                }
            })
        })
        .collect();
    // snapshots taken while recording must not disturb anything
    for _ in 0..20 {
        let _ = store.snapshot();
    }
    for h in handles {
        h.join().unwrap();
    }
}

/// The sum of family `name`'s series with `suffix` (of a histogram's buckets, `+Inf` only).
fn total(f: &[Family], name: &str, suffix: &str) -> f64 {
    let fam = f.iter().find(|fam| fam.name == name).unwrap();
    let mine = fam.series.iter().filter(|s| s.suffix == suffix);
    mine.filter(|s| {
        s.labels
            .last()
            .is_none_or(|(k, v)| k != "le" || v == "+Inf")
    })
    .map(|s| s.value)
    .sum()
}

#[test]
fn concurrent_records_are_exact() {
    const THREADS: u64 = 8;
    const PER: u64 = 10_000;
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    record_concurrently(&store, THREADS, PER);
    let f = store.snapshot();
    let total = |name: &str, suffix: &str| total(&f, name, suffix);
    let all = (THREADS * PER) as f64;
    let failed = all / 10.0;
    let success = all - failed;
    assert_eq!(total("ollama_requests_total", ""), all);
    assert_eq!(total("ollama_requests_success", ""), success);
    assert_eq!(total("ollama_requests_failed", ""), failed);
    assert_eq!(total("ollama_tokens_generated_total", ""), 3.0 * success);
    assert_eq!(total("ollama_prompt_tokens_total", ""), 2.0 * success);
    assert_eq!(total("ollama_response_duration_seconds", "_count"), success);
    assert_eq!(
        total("ollama_model_load_duration_seconds", "_count"),
        success
    );
    assert_eq!(total("ollama_endpoint_requests_total", ""), all);
    assert_eq!(total("ollama_request_duration_seconds", "_count"), all);
    assert_eq!(total("ollama_request_duration_seconds", "_bucket"), all);
    let sum = total("ollama_request_duration_seconds", "_sum");
    assert!((sum - all / 1000.0).abs() < 1e-9, "{sum}");
    assert_eq!(total("ollama_load_duration_seconds", "_count"), success);
    // time to first token: successful chat records only (half of them, by i parity)
    let chat_success = (THREADS * (PER / 2 - PER / 10)) as f64;
    assert_eq!(
        total("ollama_time_to_first_token_seconds", "_count"),
        chat_success
    );
    assert_eq!(
        total("ollama_time_per_output_token_seconds", "_count"),
        chat_success
    );
    assert_eq!(total("ollama_tap_proxy_overhead_seconds", "_count"), all);
    for m in 1..4 {
        let v = |fam: usize| f[fam].series[m - 1].value;
        assert_eq!(v(1), v(2) + v(3));
    }
    assert_eq!(store.models(), 3);
}

#[test]
fn default_help_texts_name_the_default_window() {
    let last = format!("the last {DEFAULT_WINDOW} successful requests");
    for help in [families::RESPONSE_HELP_DEFAULT, families::LOAD_HELP_DEFAULT] {
        assert!(help.contains(&last), "{help}");
    }
}
