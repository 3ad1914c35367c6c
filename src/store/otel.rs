//! The OpenTelemetry GenAI semantic-convention metrics as Prometheus names (`otel_semconv =
//! true`), rendered from the same per-(model, endpoint) histograms as the `ollama_*` families:
//! no second measurement.
//!
//! | family | from | labels beyond the common four |
//! |---|---|---|
//! | `gen_ai_client_operation_duration_seconds` | request duration, successes; failures by outcome | `error_type` on failures |
//! | `gen_ai_client_token_usage` | prompt and output tokens per successful request | `gen_ai_token_type` (`input`, `output`) |
//! | `gen_ai_server_time_to_first_token_seconds` | time to first token | |
//! | `gen_ai_server_time_per_output_token_seconds` | time per output token | |
//!
//! The common four: `gen_ai_operation_name` ([`Endpoint::otel_operation`]: the endpoints of
//! one operation are added up), `gen_ai_provider_name="ollama"`, `gen_ai_request_model` and
//! `gen_ai_response_model` (both the `model` label: Ollama answers with the model asked for).
//! So the token-usage series of a (model, operation) carry exactly the labels of its
//! successful duration series plus `gen_ai_token_type`, and
//! `sum without (gen_ai_token_type) (…token_usage_sum{gen_ai_token_type="output"}) /
//! …operation_duration_seconds_count` matches them one to one. The bucket boundaries are the
//! convention's: the agent's own layouts extend them, and a cumulative histogram cut to its
//! first bounds is exact. A series appears with its first observation.

use std::sync::Arc;

use super::histogram::HistogramSnapshot;
use super::model_stats::{EndpointStats, ModelStats};
use crate::snapshot::{Family, Kind, Labels};
use crate::vocab::{Endpoint, Outcome};

/// Number of families this module adds.
pub(crate) const COUNT: usize = 4;

const OPERATIONS: [&str; 3] = ["chat", "text_completion", "embeddings"];

/// Bounds of the convention within the agent's layouts: `operation.duration` is
/// DURATION_BUCKETS up to 81.92 s, `time_to_first_token` TTFT_BUCKETS up to 10 s,
/// `time_per_output_token` TPOT_BUCKETS up to 2.5 s.
const DURATION_BOUNDS: usize = 14;
const TTFT_BOUNDS: usize = 16;
const TPOT_BOUNDS: usize = 13;

/// The four families, series sorted by model, then operation.
pub(crate) fn families(models: &[(Box<str>, Arc<ModelStats>)], out: &mut Vec<Family>) {
    let mut duration = Family::new(
        "gen_ai_client_operation_duration_seconds",
        "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration), seconds: \
         request arrival to last byte as the proxy measures it; failed operations carry \
         error_type.",
        Kind::Histogram,
    );
    let mut tokens = Family::new(
        "gen_ai_client_token_usage",
        "Tokens per successful GenAI operation (OpenTelemetry gen_ai.client.token.usage), by \
         gen_ai_token_type: input (prompt) or output.",
        Kind::Histogram,
    );
    let mut ttft = Family::new(
        "gen_ai_server_time_to_first_token_seconds",
        "Time to the first output chunk of successful streamed operations (OpenTelemetry \
         gen_ai.server.time_to_first_token), seconds.",
        Kind::Histogram,
    );
    let mut tpot = Family::new(
        "gen_ai_server_time_per_output_token_seconds",
        "Time per output token after the first of successful streamed operations \
         (OpenTelemetry gen_ai.server.time_per_output_token), seconds.",
        Kind::Histogram,
    );
    for (model, stats) in models {
        for op in OPERATIONS {
            let pairs: Vec<(Endpoint, &EndpointStats)> = stats
                .recorded_endpoints()
                .filter(|(e, _)| e.otel_operation() == op)
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let base = common_labels(op, model);
            let sum = |pick: fn(&EndpointStats) -> HistogramSnapshot| {
                let mut all: Option<HistogramSnapshot> = None;
                for (_, s) in &pairs {
                    let h = pick(s);
                    match &mut all {
                        Some(a) => a.add(&h),
                        None => all = Some(h),
                    }
                }
                all.expect("pairs is not empty")
            };
            let ok = sum(|s| s.ok_duration.snapshot());
            push_observed(&mut duration, &base, &ok.first_bounds(DURATION_BOUNDS));
            for (outcome, h) in failed_by_outcome(&pairs) {
                let mut labels = base.clone();
                labels.push(("error_type".to_owned(), outcome.label().into_owned()));
                push_observed(&mut duration, &labels, &h.first_bounds(DURATION_BOUNDS));
            }
            for (kind, pick) in [
                (
                    "input",
                    (|s| s.input_tokens.snapshot()) as fn(&EndpointStats) -> _,
                ),
                ("output", |s| s.output_tokens.snapshot()),
            ] {
                let mut labels = base.clone();
                labels.push(("gen_ai_token_type".to_owned(), kind.to_owned()));
                push_observed(&mut tokens, &labels, &sum(pick));
            }
            push_observed(
                &mut ttft,
                &base,
                &sum(|s| s.ttft.snapshot()).first_bounds(TTFT_BOUNDS),
            );
            push_observed(
                &mut tpot,
                &base,
                &sum(|s| s.tpot.snapshot()).first_bounds(TPOT_BOUNDS),
            );
        }
    }
    out.extend([duration, tokens, ttft, tpot]);
}

/// The failures of every pair, added up per outcome, in outcome order.
fn failed_by_outcome(pairs: &[(Endpoint, &EndpointStats)]) -> Vec<(Outcome, HistogramSnapshot)> {
    let mut out: Vec<(Outcome, HistogramSnapshot)> = Vec::new();
    for (_, s) in pairs {
        for (outcome, h) in s.failed_durations() {
            match out.iter_mut().find(|(o, _)| *o == outcome) {
                Some((_, a)) => a.add(&h),
                None => out.push((outcome, h)),
            }
        }
    }
    out.sort_by_key(|(o, _)| o.key());
    out
}

fn common_labels(operation: &str, model: &str) -> Labels {
    vec![
        ("gen_ai_operation_name".to_owned(), operation.to_owned()),
        ("gen_ai_provider_name".to_owned(), "ollama".to_owned()),
        ("gen_ai_request_model".to_owned(), model.to_owned()),
        ("gen_ai_response_model".to_owned(), model.to_owned()),
    ]
}

/// Appends the histogram's series when it has an observation.
fn push_observed(family: &mut Family, base: &Labels, s: &HistogramSnapshot) {
    if s.count > 0 {
        super::families::push_histogram(family, base, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::histogram::{DURATION_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS};

    #[test]
    fn the_conventions_bounds_are_the_first_of_the_agents() {
        let duration = [
            0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
        ];
        let ttft = [
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0,
        ];
        let tpot = [
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
        ];
        assert_eq!(DURATION_BUCKETS[..DURATION_BOUNDS], duration);
        assert_eq!(TTFT_BUCKETS[..TTFT_BOUNDS], ttft);
        assert_eq!(TPOT_BUCKETS[..TPOT_BOUNDS], tpot);
    }
}
