//! The series budget: how many series one model costs in the common cases (README's "Series
//! budget" quotes these counts).

use super::*;

/// Series that carry `model="m"` (README's "Series budget" quotes these counts).
fn series_of_model(store: &Store, model: &str) -> usize {
    store
        .snapshot()
        .iter()
        .flat_map(|f| &f.series)
        .filter(|s| s.labels.iter().any(|(k, v)| k == "model" && v == model))
        .count()
}

/// A successful native answer with Ollama's four durations and a finish reason.
fn native(model: &str, endpoint: Endpoint, ttft: Option<Duration>) -> Record<'_> {
    Record {
        endpoint,
        usage: Usage {
            total_duration_ns: Some(900_000_000),
            load_duration_ns: Some(2_000_000),
            prompt_eval_duration_ns: Some(40_000_000),
            eval_duration_ns: Some(800_000_000),
            ..u(20, 80)
        },
        finish_reason: Some(crate::vocab::FinishReason::Stop),
        ttft,
        ..ok(model, 20, 80, 950)
    }
}

#[test]
fn series_per_model_for_the_common_cases() {
    let store = Store::new(10);
    let first = Some(Duration::from_millis(60));
    // non-streamed on /api/chat: the plugin's 16 (5 counters, 7 + 4 summary series), 5
    // histograms of 18–20 series, 3 counters, in flight
    store.record(&native("plain", Endpoint::Chat, None));
    assert_eq!(series_of_model(&store, "plain"), 117);
    // streamed: + time to first token (22) and time per output token (17)
    store.record(&native("streamed", Endpoint::Chat, first));
    assert_eq!(series_of_model(&store, "streamed"), 156);
    // streamed natively and called through the OpenAI API too (/v1: no durations, so request
    // duration, TTFT and TPOT only)
    store.record(&native("both", Endpoint::Chat, first));
    store.record(&Record {
        endpoint: Endpoint::OpenAiChat,
        ttft: first,
        ..ok("both", 20, 80, 950)
    });
    assert_eq!(series_of_model(&store, "both"), 156 + 20 + 22 + 17 + 2);
}
