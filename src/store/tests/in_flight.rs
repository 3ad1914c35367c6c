//! Tests of a request's life in the store: in flight from [`Store::begin`], recorded by
//! [`Store::finish`] into the stats found at the start when they are its label's own, or
//! through the cardinality guard when they are not.

use super::*;

#[test]
fn in_flight_guard_counts_up_and_down() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<InFlight>();
    let store = Store::new(10);
    let in_flight = |s: &Store| dump(&s.snapshot(), "ollama_requests_in_flight");
    // A model's first request is in flight under "other": it has no label of its own yet.
    let first = store.begin("m");
    assert_eq!(in_flight(&store), ["{model=other} 1"]);
    assert!(dump(&store.snapshot(), "ollama_requests_total").is_empty());
    drop(first);
    store.record(&ok("m", 1, 1, 1));
    store.record(&ok("n", 1, 1, 1));
    let a = store.begin("m");
    let b = store.begin("m");
    let c = store.begin("n");
    assert_eq!(
        in_flight(&store),
        ["{model=m} 2", "{model=n} 1", "{model=other} 0"]
    );
    drop(a);
    assert_eq!(
        in_flight(&store),
        ["{model=m} 1", "{model=n} 1", "{model=other} 0"]
    );
    drop((b, c));
    assert_eq!(
        in_flight(&store),
        ["{model=m} 0", "{model=n} 0", "{model=other} 0"]
    );
}

#[test]
fn in_flight_guards_move_and_drop_across_threads() {
    const THREADS: usize = 8;
    let store = Arc::new(Store::new(10));
    store.record(&ok("m", 1, 1, 1));
    let barrier = Arc::new(std::sync::Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let guard = store.begin("m"); // taken here, dropped in the thread
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let own = guard;
                barrier.wait(); // all held
                barrier.wait(); // checked
                drop(own);
            })
        })
        .collect();
    barrier.wait();
    let want = format!("{{model=m}} {THREADS}");
    assert_eq!(dump(&store.snapshot(), "ollama_requests_in_flight"), [want]);
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        dump(&store.snapshot(), "ollama_requests_in_flight"),
        ["{model=m} 0"]
    );
}

/// The stats `model`'s label has in the map now.
fn entry(store: &Store, model: &str) -> Arc<ModelStats> {
    Arc::clone(&store.models.read()[model])
}

#[test]
fn a_known_model_is_recorded_into_the_stats_found_at_the_start() {
    let store = Store::new(10);
    store.record(&ok("m", 1, 1, 1));
    let begun = store.begin("m");
    let at_start = entry(&store, "m");
    assert!(Arc::ptr_eq(&begun.stats, &at_start));
    // Put other stats in the map under the same label: a record that looked the label up
    // again would land there, one that uses the guard's stats lands in the first ones.
    let swapped = Arc::new(ModelStats::new("m", 10));
    store
        .models
        .write()
        .insert(Box::from("m"), Arc::clone(&swapped));
    store.finish(begun, &ok("m", 2, 3, 4));
    assert_eq!(at_start.requests.load(Relaxed), 2);
    assert_eq!(at_start.tokens_generated.load(Relaxed), 1 + 3);
    assert_eq!(swapped.requests.load(Relaxed), 0);
    assert_eq!(at_start.in_flight.load(Relaxed), 0);
}

#[test]
fn a_new_model_is_in_flight_under_other_and_recorded_under_its_own_name() {
    let store = Store::new(10);
    let in_flight = |s: &Store| dump(&s.snapshot(), "ollama_requests_in_flight");
    let begun = store.begin("m");
    assert_eq!(in_flight(&store), ["{model=other} 1"]);
    store.finish(begun, &ok("m", 1, 1, 1));
    assert_eq!(
        dump(&store.snapshot(), "ollama_requests_total"),
        ["{model=m} 1"]
    );
    assert_eq!(in_flight(&store), ["{model=m} 0", "{model=other} 0"]);
    // the second request finds the label the first one made
    let begun = store.begin("m");
    assert!(Arc::ptr_eq(&begun.stats, &entry(&store, "m")));
    assert_eq!(in_flight(&store), ["{model=m} 1", "{model=other} 0"]);
    drop(begun);
}

#[test]
fn finish_ends_the_in_flight_count_exactly_once_whatever_the_path() {
    let store = Store::with_max_models(10, 1);
    store.record(&ok("a", 1, 1, 1));
    let gauge = |m: &str| {
        let models = store.models.read();
        models.get(m).map_or(0, |s| s.in_flight.load(Relaxed))
    };
    // fast path: a's own stats
    let begun = store.begin("a");
    assert_eq!((gauge("a"), gauge("other")), (1, 0));
    store.finish(begun, &ok("a", 1, 1, 1));
    assert_eq!((gauge("a"), gauge("other")), (0, 0));
    // slow paths: past the cap, a 404 for a name without a label, a label from the answer
    for (begun_as, rec) in [
        ("b", ok("b", 1, 1, 1)),
        ("c", failed("c", Outcome::Http(404), 1)),
        ("unknown", ok("a", 1, 1, 1)),
    ] {
        let begun = store.begin(begun_as);
        assert_eq!((gauge("a"), gauge("other")), (0, 1), "{begun_as}");
        store.finish(begun, &rec);
        assert_eq!((gauge("a"), gauge("other")), (0, 0), "{begun_as}");
    }
    assert_eq!(
        dump(&store.snapshot(), "ollama_requests_total"),
        ["{model=a} 3", "{model=other} 2"]
    );
}
