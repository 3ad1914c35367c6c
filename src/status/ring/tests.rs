//! Tests of the status ring: bounds, rates and P95 from two samples, resets, the memory figure.

use super::*;
use crate::snapshot::Kind;
use crate::store::histogram::DURATION_BUCKETS;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A snapshot of `models`: (name, requests, failed, tokens, request durations in seconds),
/// the durations on two endpoints alternately, plus `in_flight`.
fn snapshot(models: &[(&str, u64, u64, u64, &[f64])], in_flight: u64) -> Vec<Family> {
    let mut requests = Family::new(REQUESTS, "", Kind::Counter);
    let mut failed = Family::new(FAILED, "", Kind::Counter);
    let mut tokens = Family::new(TOKENS, "", Kind::Counter);
    let mut flight = Family::new(IN_FLIGHT, "", Kind::Gauge);
    let mut duration = Family::new(DURATION, "", Kind::Histogram);
    for &(m, r, f, t, durations) in models {
        requests.push("", labels(&[("model", m)]), r as f64);
        failed.push("", labels(&[("model", m)]), f as f64);
        tokens.push("", labels(&[("model", m)]), t as f64);
        flight.push("", labels(&[("model", m)]), 0.0);
        for (i, endpoint) in ["/api/chat", "/api/generate"].into_iter().enumerate() {
            let mine: Vec<f64> = durations.iter().copied().skip(i).step_by(2).collect();
            let bounds = DURATION_BUCKETS.iter().map(|b| (*b, b.to_string()));
            for (b, le) in bounds.chain([(f64::INFINITY, "+Inf".to_owned())]) {
                let n = mine.iter().filter(|d| **d <= b).count();
                let l = labels(&[("model", m), ("endpoint", endpoint), ("le", &le)]);
                duration.push("_bucket", l, n as f64);
            }
        }
    }
    if let Some(s) = flight.series.first_mut() {
        s.value = in_flight as f64;
    }
    vec![requests, failed, tokens, flight, duration]
}

#[test]
fn the_ring_keeps_the_last_90_samples_and_drops_the_oldest() {
    let ring = Ring::new();
    let t0 = Instant::now();
    for i in 0..100u64 {
        let n = i * 2;
        ring.sample(
            &snapshot(&[("a:latest", n, 0, 0, &[])], i),
            t0 + EVERY * i as u32,
        );
    }
    assert_eq!(ring.len(), SAMPLES);
    ring.with(|s| {
        assert_eq!(
            s.front().unwrap().in_flight,
            10,
            "samples 0..10 were dropped"
        );
        assert_eq!(s.back().unwrap().in_flight, 99);
        assert_eq!(s.front().unwrap().at, t0 + EVERY * 10);
    });
}

#[test]
fn rates_and_p95_are_differences_of_two_samples() {
    let ring = Ring::new();
    let t0 = Instant::now();
    let before: &[f64] = &[5.0; 50];
    ring.sample(&snapshot(&[("a:latest", 50, 2, 500, before)], 0), t0);
    // 60 more requests in 60 s: 57 fast (0.01 s bucket) and 3 slow; 6 failures, 1200 tokens.
    let mut after = before.to_vec();
    after.extend([0.005; 57]);
    after.extend([3.0; 3]);
    ring.sample(
        &snapshot(&[("a:latest", 110, 8, 1700, &after)], 1),
        t0 + Duration::from_secs(60),
    );
    ring.with(|s| {
        let d = s[1].delta(&s[0], "a:latest").unwrap();
        assert_eq!((d.requests, d.failed, d.tokens), (60, 6, 1200));
        assert_eq!(d.seconds, 60.0);
        assert_eq!(d.per_second(d.requests), 1.0);
        assert_eq!(d.per_second(d.tokens), 20.0);
        assert_eq!(d.duration.last(), Some(&60), "both endpoints summed");
        // rank 57 of 60 is the last fast one: within (0, 0.01].
        let p95 = quantile(0.95, &s[1].duration_bounds, &d.duration).unwrap();
        assert!((p95 - 0.01).abs() < 1e-9, "{p95}");
        // the 50 earlier 5 s requests are not in the difference: since start, the P95
        // falls among them, in (2.56, 5.12].
        let since_start = quantile(0.95, &s[1].duration_bounds, &s[1].models[0].duration);
        assert!(since_start.unwrap() > 2.56, "{since_start:?}");
        assert_eq!(s[1].in_flight, 1);
    });
}

#[test]
fn a_counter_reset_counts_from_zero_and_a_new_model_from_nothing() {
    let ring = Ring::new();
    let t0 = Instant::now();
    ring.sample(
        &snapshot(&[("a:latest", 100, 10, 1000, &[1.0; 100])], 0),
        t0,
    );
    ring.sample(
        &snapshot(
            &[
                ("a:latest", 4, 1, 30, &[1.0; 4]),
                ("b:latest", 7, 0, 70, &[]),
            ],
            0,
        ),
        t0 + EVERY,
    );
    ring.with(|s| {
        let a = s[1].delta(&s[0], "a:latest").unwrap();
        assert_eq!((a.requests, a.failed, a.tokens), (4, 1, 30));
        assert_eq!(a.duration.last(), Some(&4));
        let b = s[1].delta(&s[0], "b:latest").unwrap();
        assert_eq!(
            (b.requests, b.tokens),
            (7, 70),
            "absent before: it had nothing"
        );
        assert!(s[1].delta(&s[1], "a:latest").is_none(), "no time passed");
    });
}

#[test]
fn a_sample_keeps_the_busiest_models_and_says_it_left_some_out() {
    let names: Vec<String> = (0..MAX_MODELS + 5).map(|i| format!("m{i:03}")).collect();
    let models: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u64 + 1, 0, 0, &[][..]))
        .collect();
    let t0 = Instant::now();
    let first = Sample::of(&snapshot(&models, 0), t0, MAX_MODELS);
    let second = Sample::of(&snapshot(&models, 0), t0 + EVERY, MAX_MODELS);
    assert_eq!(first.models.len(), MAX_MODELS);
    assert!(first.truncated);
    assert!(first.model("m000").is_none(), "the least busy is left out");
    assert!(second.delta(&first, "m000").is_none(), "unknown, not idle");
    assert_eq!(second.delta(&first, "m104").unwrap().requests, 0);
}

#[test]
fn quantile_interpolates_within_the_bucket_as_prometheus() {
    let bounds = [1.0, 2.0, f64::INFINITY];
    assert_eq!(quantile(0.5, &bounds, &[10, 20, 20]), Some(1.0));
    assert_eq!(quantile(0.75, &bounds, &[10, 20, 20]), Some(1.5));
    assert_eq!(
        quantile(0.95, &bounds, &[0, 0, 5]),
        Some(2.0),
        "+Inf: the last bound"
    );
    assert_eq!(quantile(0.95, &bounds, &[0, 0, 0]), None);
    assert_eq!(quantile(0.95, &bounds, &[]), None);
}

#[test]
fn the_memory_per_model_is_what_the_readme_says() {
    // README (Status page) and the module docs: 72 + 8 x 18 bytes per model and sample,
    // about 19 KB per model for the 90 samples.
    assert_eq!(std::mem::size_of::<ModelSample>(), 72);
    let per_model = |models: usize| {
        let ring = Ring::new();
        let all: Vec<String> = (0..models).map(|i| format!("m{i}")).collect();
        let snap: Vec<_> = all
            .iter()
            .map(|n| (n.as_str(), 1, 0, 0, &[0.1][..]))
            .collect();
        let t0 = Instant::now();
        for i in 0..SAMPLES as u32 {
            ring.sample(&snapshot(&snap, 0), t0 + EVERY * i);
        }
        ring.bytes()
    };
    let one_more = per_model(11) - per_model(10);
    assert_eq!(one_more, SAMPLES * (72 + 8 * (DURATION_BUCKETS.len() + 1)));
    assert_eq!(one_more, 19_440);
}
