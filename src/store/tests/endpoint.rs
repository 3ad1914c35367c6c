//! Tests of the per-(model, endpoint) histograms and counters.

use super::*;
use crate::store::histogram::QUEUE_WAIT_BUCKETS;
use crate::vocab::FinishReason;

/// The histogram of `name` for (`model`, `endpoint`): cumulative buckets (`+Inf` last), sum,
/// count. `None` when the pair has no series.
fn hist(fams: &[Family], name: &str, model: &str, e: Endpoint) -> Option<(Vec<f64>, f64, f64)> {
    let f = fams.iter().find(|f| f.name == name).unwrap();
    let base = [
        ("model".to_owned(), model.to_owned()),
        ("endpoint".to_owned(), e.as_str().to_owned()),
    ];
    let mine = |suffix: &str| {
        f.series
            .iter()
            .filter(|s| s.suffix == suffix && s.labels[..2] == base[..])
            .map(|s| s.value)
            .collect::<Vec<f64>>()
    };
    let buckets = mine("_bucket");
    if buckets.is_empty() {
        return None;
    }
    Some((buckets, mine("_sum")[0], mine("_count")[0]))
}

/// `len` cumulative bucket values: 0, and from index `i` on `v` for each `(i, v)`.
fn steps(len: usize, at: &[(usize, f64)]) -> Vec<f64> {
    let mut out = vec![0.0; len];
    for &(i, v) in at {
        out[i..].iter_mut().for_each(|x| *x = v);
    }
    out
}

// --- per-endpoint histograms --------------------------------------------------------------

#[test]
fn request_duration_counts_failures_but_not_load_only() {
    let store = Store::new(10);
    store.record(&ok("m", 1, 1, 10)); // exactly on the first bound: le is inclusive
    store.record(&ok("m", 1, 1, 1500));
    store.record(&failed("m", Outcome::Http(500), 9000));
    store.record(&failed("m", Outcome::Timeout, 700_000)); // above every bound
    store.record(&Record {
        load_only: true,
        ..ok("m", 0, 0, 9000)
    });
    let f = store.snapshot();
    let (buckets, sum, count) =
        hist(&f, "ollama_request_duration_seconds", "m", Endpoint::Chat).unwrap();
    assert_eq!(
        buckets,
        steps(18, &[(0, 1.0), (8, 2.0), (10, 3.0), (17, 4.0)])
    );
    assert_eq!((sum, count), (710.51, 4.0));
    let d = dump(&f, "ollama_request_duration_seconds");
    assert_eq!(d[0], "_bucket{model=m,endpoint=/api/chat,le=0.01} 1");
    assert_eq!(d[14], "_bucket{model=m,endpoint=/api/chat,le=163.84} 3");
    assert_eq!(d[17], "_bucket{model=m,endpoint=/api/chat,le=+Inf} 4");
    assert_eq!(d[18], "_sum{model=m,endpoint=/api/chat} 710.51");
    assert_eq!(d[19], "_count{model=m,endpoint=/api/chat} 4");
    assert_eq!(d.len(), 20);
}

#[test]
fn ttft_only_when_some_and_tpot_spreads_the_rest_over_later_tokens() {
    let store = Store::new(10);
    let e = Endpoint::OpenAiChat;
    let stream = |ms, ttft_ms, tokens| Record {
        endpoint: e,
        ttft: Some(Duration::from_millis(ttft_ms)),
        ..ok("m", 1, tokens, ms)
    };
    store.record(&stream(2000, 500, 31)); // tpot (2 − 0.5) / 30 = 0.05
    store.record(&stream(300, 100, 1)); // one token: no tpot
    store.record(&Record {
        endpoint: e,
        ..ok("m", 1, 10, 900)
    }); // not streamed: neither
    store.record(&Record {
        outcome: Outcome::StreamError,
        ..stream(900, 100, 10)
    }); // failed: ignored even with a ttft
    store.record(&Record {
        load_only: true,
        ..stream(900, 100, 10)
    });
    let f = store.snapshot();
    let (buckets, sum, count) = hist(&f, "ollama_time_to_first_token_seconds", "m", e).unwrap();
    assert_eq!(buckets, steps(20, &[(7, 1.0), (9, 2.0)])); // le 0.1 and 0.5
    assert_eq!((sum, count), (0.6, 2.0));
    let (buckets, sum, count) = hist(&f, "ollama_time_per_output_token_seconds", "m", e).unwrap();
    assert_eq!(buckets, steps(15, &[(2, 1.0)])); // le 0.05
    assert_eq!((sum, count), (0.05, 1.0));
}

#[test]
fn tokens_per_second_is_eval_count_over_eval_duration() {
    let store = Store::new(10);
    let e = Endpoint::Generate;
    let gen = |tokens: u64, eval_ns: Option<u64>| Record {
        endpoint: e,
        usage: Usage {
            eval_duration_ns: eval_ns,
            ..u(1, tokens)
        },
        ..ok("m", 0, 0, 100)
    };
    store.record(&gen(100, Some(2_000_000_000))); // 50 tokens/s
    store.record(&gen(2000, Some(1_000_000_000))); // 2000 tokens/s: above every bound
    store.record(&gen(0, Some(1_000_000_000))); // no tokens
    store.record(&gen(5, Some(0))); // no duration
    store.record(&gen(5, None));
    store.record(&Record {
        outcome: Outcome::Http(500),
        ..gen(10, Some(1_000_000_000))
    });
    let f = store.snapshot();
    let (buckets, sum, count) = hist(&f, "ollama_generation_tokens_per_second", "m", e).unwrap();
    assert_eq!(buckets, steps(17, &[(8, 1.0), (16, 2.0)])); // le 50, +Inf
    assert_eq!((sum, count), (2050.0, 2.0));
}

#[test]
fn prompt_eval_on_success_and_load_histogram_includes_load_only() {
    let store = Store::new(10);
    let e = Endpoint::Generate;
    let with = |prompt_eval: Option<u64>, load: Option<u64>| Usage {
        prompt_eval_duration_ns: prompt_eval,
        load_duration_ns: load,
        ..u(1, 1)
    };
    let rec = |usage| Record {
        endpoint: e,
        usage,
        ..ok("m", 0, 0, 100)
    };
    store.record(&rec(with(Some(250_000_000), Some(50_000_000))));
    store.record(&Record {
        load_only: true,
        ..rec(with(None, Some(3_000_000_000)))
    });
    store.record(&Record {
        outcome: Outcome::Http(500),
        ..rec(with(Some(1), Some(1)))
    });
    let f = store.snapshot();
    let (buckets, sum, count) = hist(&f, "ollama_prompt_eval_duration_seconds", "m", e).unwrap();
    assert_eq!(buckets, steps(18, &[(5, 1.0)])); // le 0.32
    assert_eq!((sum, count), (0.25, 1.0));
    let (buckets, sum, count) = hist(&f, "ollama_load_duration_seconds", "m", e).unwrap();
    assert_eq!(buckets, steps(18, &[(3, 1.0), (9, 2.0)])); // le 0.08, 5.12
    assert_eq!((sum, count), (3.05, 2.0));
    // the original summary keeps load-only requests out
    let load = dump(&f, "ollama_model_load_duration_seconds");
    assert_eq!(load[2..], ["_sum{model=m} 0.05", "_count{model=m} 1"]);
}

#[test]
fn embedding_endpoints_have_no_generation_histograms() {
    let store = Store::new(10);
    for e in [Endpoint::Embed, Endpoint::OpenAiEmbeddings] {
        store.record(&Record {
            endpoint: e,
            usage: Usage {
                prompt_tokens: Some(7),
                prompt_eval_duration_ns: Some(20_000_000),
                ..Usage::default()
            },
            ..ok("e", 0, 0, 30)
        });
    }
    let f = store.snapshot();
    for name in [
        "ollama_time_to_first_token_seconds",
        "ollama_time_per_output_token_seconds",
        "ollama_generation_tokens_per_second",
    ] {
        assert!(dump(&f, name).is_empty(), "{name}");
    }
    for e in [Endpoint::Embed, Endpoint::OpenAiEmbeddings] {
        let d = hist(&f, "ollama_request_duration_seconds", "e", e).unwrap();
        assert_eq!(d.2, 1.0);
        let p = hist(&f, "ollama_prompt_eval_duration_seconds", "e", e).unwrap();
        assert_eq!((p.1, p.2), (0.02, 1.0));
        // never observed (no load_duration): no series
        assert_eq!(hist(&f, "ollama_load_duration_seconds", "e", e), None);
    }
    assert_eq!(dump(&f, "ollama_tokens_generated_total"), ["{model=e} 0"]);
    assert_eq!(dump(&f, "ollama_prompt_tokens_total"), ["{model=e} 14"]);
}

// --- per-endpoint counters ----------------------------------------------------------------

#[test]
fn outcomes_are_labelled_in_outcome_order() {
    let store = Store::new(10);
    store.record(&ok("m", 1, 1, 1));
    for s in [
        Outcome::Timeout,
        Outcome::Http(599),
        Outcome::StreamError,
        Outcome::ClientAborted,
        Outcome::BackendUnreachable,
        Outcome::Http(404),
        Outcome::Http(500),
    ] {
        store.record(&failed("m", s, 1));
    }
    store.record(&ok("m", 1, 1, 1));
    let base = "{model=m,endpoint=/api/chat,outcome=";
    let want: Vec<String> = [
        "200} 2",
        "404} 1",
        "500} 1",
        "599} 1",
        "stream_error} 1",
        "client_aborted} 1",
        "backend_unreachable} 1",
        "timeout} 1",
    ]
    .iter()
    .map(|s| format!("{base}{s}"))
    .collect();
    assert_eq!(
        dump(&store.snapshot(), "ollama_endpoint_requests_total"),
        want
    );
}

#[test]
fn finish_reasons_count_every_record_that_has_one() {
    let store = Store::new(10);
    let with = |reason| Record {
        finish_reason: Some(reason),
        ..ok("m", 1, 1, 1)
    };
    store.record(&with(FinishReason::Stop));
    store.record(&with(FinishReason::Length));
    store.record(&with(FinishReason::Stop));
    store.record(&with(FinishReason::ToolCalls));
    store.record(&Record {
        outcome: Outcome::Http(500),
        ..with(FinishReason::Length)
    });
    store.record(&Record {
        load_only: true,
        ..with(FinishReason::Load)
    });
    store.record(&Record {
        load_only: true,
        ..with(FinishReason::Unload)
    });
    store.record(&ok("m", 1, 1, 1)); // none
    let b = "{model=m,endpoint=/api/chat,reason=";
    assert_eq!(
        dump(&store.snapshot(), "ollama_finish_reason_total"),
        [
            format!("{b}stop}} 2"),
            format!("{b}length}} 2"),
            format!("{b}tool_calls}} 1"),
            format!("{b}load}} 1"),
            format!("{b}unload}} 1"),
        ]
    );
}

#[test]
fn cached_prompt_tokens_from_successful_requests_that_report_them() {
    let store = Store::new(10);
    let cached = |n| Usage {
        cached_prompt_tokens: Some(n),
        ..u(10, 1)
    };
    store.record(&Record {
        usage: cached(5),
        ..ok("m", 0, 0, 1)
    });
    store.record(&ok("m", 10, 1, 1));
    store.record(&Record {
        outcome: Outcome::Http(500),
        usage: cached(100),
        ..ok("m", 0, 0, 1)
    });
    store.record(&Record {
        load_only: true,
        usage: cached(9),
        ..ok("m", 0, 0, 1)
    });
    store.record(&ok("z", 1, 1, 1)); // recorded pair without any: 0
    assert_eq!(
        dump(&store.snapshot(), "ollama_prompt_cached_tokens_total"),
        [
            "{model=m,endpoint=/api/chat} 5",
            "{model=z,endpoint=/api/chat} 0"
        ]
    );
}

#[test]
fn series_only_for_recorded_pairs_by_model_then_endpoint() {
    let store = Store::new(10);
    let at = |model, endpoint| Record {
        endpoint,
        ..ok(model, 1, 1, 1)
    };
    store.record(&at("b", Endpoint::Chat));
    store.record(&at("a", Endpoint::AnthropicMessages));
    store.record(&at("b", Endpoint::Generate));
    let _guard = store.begin("c"); // a new name: in flight under `other`, no pair
    let f = store.snapshot();
    assert_eq!(
        dump(&f, "ollama_endpoint_requests_total"),
        [
            "{model=a,endpoint=/v1/messages,outcome=200} 1",
            "{model=b,endpoint=/api/generate,outcome=200} 1",
            "{model=b,endpoint=/api/chat,outcome=200} 1",
        ]
    );
    let duration = dump(&f, "ollama_request_duration_seconds");
    assert_eq!(duration.len(), 3 * 20);
    assert!(duration[0].starts_with("_bucket{model=a,endpoint=/v1/messages,le=0.01} "));
    assert!(duration[20].starts_with("_bucket{model=b,endpoint=/api/generate,le=0.01} "));
    assert_eq!(duration[59], "_count{model=b,endpoint=/api/chat} 1");
    // nothing streamed: no pair has a time-to-first-token series
    assert!(dump(&f, "ollama_time_to_first_token_seconds").is_empty());
    assert_eq!(
        dump(&f, "ollama_requests_total"),
        ["{model=a} 1", "{model=b} 2"]
    );
    assert_eq!(
        dump(&f, "ollama_requests_in_flight"),
        ["{model=a} 0", "{model=b} 0", "{model=other} 1"]
    );
}

// --- queue wait -------------------------------------------------------------------------------

#[test]
fn queue_wait_is_total_minus_load_prompt_and_eval_clamped_at_zero() {
    let store = Store::new(10);
    let with = |total: Option<u64>, load: Option<u64>| Record {
        usage: Usage {
            total_duration_ns: total,
            load_duration_ns: load,
            prompt_eval_duration_ns: Some(100_000_000),
            eval_duration_ns: Some(200_000_000),
            ..u(3, 4)
        },
        ..ok("m", 3, 4, 900)
    };
    // 0.7 s − 0.05 − 0.1 − 0.2 = 0.35 s waited for a slot
    store.record(&with(Some(700_000_000), Some(50_000_000)));
    // Ollama's figures may not add up (clock steps): never negative
    store.record(&with(Some(300_000_000), Some(50_000_000)));
    // not all four reported: no observation
    store.record(&with(None, Some(50_000_000)));
    store.record(&with(Some(700_000_000), None));
    let f = store.snapshot();
    let (buckets, sum, count) = hist(&f, "ollama_queue_wait_seconds", "m", Endpoint::Chat).unwrap();
    assert_eq!(count, 2.0);
    assert_eq!(sum, 0.35);
    // 0 lands in le=0.005, 0.35 in le=0.5
    let le = |b: f64| QUEUE_WAIT_BUCKETS.iter().position(|&x| x == b).unwrap();
    assert_eq!(
        (buckets[le(0.005)], buckets[le(0.25)], buckets[le(0.5)]),
        (1.0, 1.0, 2.0)
    );
}

#[test]
fn queue_wait_of_a_failure_is_not_observed() {
    let store = Store::new(10);
    store.record(&Record {
        usage: Usage {
            total_duration_ns: Some(9),
            load_duration_ns: Some(1),
            prompt_eval_duration_ns: Some(1),
            eval_duration_ns: Some(1),
            ..Usage::default()
        },
        ..failed("m", Outcome::StreamError, 5)
    });
    assert!(dump(&store.snapshot(), "ollama_queue_wait_seconds").is_empty());
}
