use super::*;
use crate::snapshot::Kind;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `requests` of one model, and a histogram `name` of it with these cumulative buckets over
/// `le` 0.1, 1 and +Inf.
fn families(model: &str, requests: u64, name: &'static str, buckets: [u64; 3]) -> Vec<Family> {
    let mut r = Family::new(ring::REQUESTS, "", Kind::Counter);
    r.push("", labels(&[("model", model)]), requests as f64);
    let mut h = Family::new(name, "", Kind::Histogram);
    for (le, n) in ["0.1", "1", "+Inf"].into_iter().zip(buckets) {
        let l = labels(&[("model", model), ("endpoint", "/api/chat"), ("le", le)]);
        h.push("_bucket", l, n as f64);
    }
    vec![r, h]
}

fn compute(families: &[Family], ring: &Ring, now: Instant) -> Status {
    Status::compute(&Inputs {
        families,
        writers: &[],
        listen: "127.0.0.1:8000".into(),
        backend_url: "http://user:pw@ollama:11434",
        backend: &Checked::default(),
        ring,
        now,
    })
}

#[test]
fn queue_wait_shows_only_when_the_family_exists_with_its_recent_p95() {
    let samples = Ring::new();
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(60);
    let without = families("a:latest", 5, ring::DURATION, [5, 5, 5]);
    samples.sample(&without, t0);
    let s = compute(&without, &samples, now);
    assert!(s.queue_wait.is_none());
    assert!(s.clients.is_none());
    assert_eq!(s.backend.url, "http://ollama:11434", "credentials removed");

    // 10 waits since start, of which the 8 recent ones all above 0.1 s: the recent P95 is
    // in (0.1, 1].
    let samples = Ring::new();
    samples.sample(&families("a:latest", 2, ring::QUEUE_WAIT, [2, 2, 2]), t0);
    let with = families("a:latest", 10, ring::QUEUE_WAIT, [2, 10, 10]);
    let s = compute(&with, &samples, now);
    let q = s.queue_wait.expect("the family exists");
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].waits, q[0].recent_waits), (10, Some(8)));
    let p95 = q[0].p95_seconds.unwrap();
    assert!(p95 > 0.1 && p95 <= 1.0, "{p95}");
    assert_eq!(s.recent_seconds, Some(60.0));
}

#[test]
fn clients_show_only_when_the_family_exists_the_busiest_first() {
    let mut requests = Family::new(CLIENT_REQUESTS, "", Kind::Counter);
    let mut tokens = Family::new(CLIENT_TOKENS, "", Kind::Counter);
    for i in 0..12u64 {
        let client = format!("c{i:02}");
        for model in ["a:latest", "b:latest"] {
            let l = labels(&[("client", &client), ("model", model)]);
            requests.push("", l.clone(), i as f64);
            tokens.push("", l, 10.0 * i as f64);
        }
    }
    let s = compute(&[requests], &Ring::new(), Instant::now());
    let clients = s.clients.expect("the family exists");
    assert_eq!(clients.total, 12);
    assert_eq!(clients.top.len(), TOP_CLIENTS);
    assert_eq!(clients.top[0].client, "c11");
    assert_eq!((clients.top[0].requests, clients.top[0].models), (22, 2));
    assert_eq!(clients.top[0].tokens, None, "no token family");
    assert_eq!(clients.top[9].client, "c02");
    assert!(s.recent_seconds.is_none(), "no sample yet");

    let mut requests = Family::new(CLIENT_REQUESTS, "", Kind::Counter);
    requests.push("", labels(&[("client", "x"), ("model", "a")]), 3.0);
    let s = compute(&[requests, tokens], &Ring::new(), Instant::now());
    assert_eq!(s.clients.unwrap().top[0].tokens, Some(0));
}

#[tokio::test(start_paused = true)]
async fn the_sampling_task_takes_a_sample_every_10_s_and_stops_with_the_agent() {
    let ring = Arc::new(Ring::new());
    let store = Arc::new(Store::new(10));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(sample_every(ring.clone(), store, stopped));
    // The first sample at once, then one every 10 s: 0, 10, ..., 950 s is 96 samples.
    tokio::time::sleep(ring::EVERY * 95 + Duration::from_millis(1)).await;
    assert_eq!(ring.len(), ring::SAMPLES, "bounded");
    ring.with(|s| {
        let span = s.back().unwrap().at - s.front().unwrap().at;
        assert_eq!(span, ring::EVERY * (ring::SAMPLES as u32 - 1));
    });
    stop.send(true).unwrap();
    task.await.unwrap();
}
