//! The status page's memory: a bounded ring of compact samples of one instance's counters,
//! taken every [`EVERY`] from a store snapshot, so that rates, error ratios and P95s over the
//! last minutes are differences of two samples.
//!
//! A [`Sample`] keeps, per model (at most [`MAX_MODELS`], the busiest by requests since start),
//! the cumulative requests, failures and generated tokens, the cumulative buckets of
//! `ollama_request_duration_seconds` (and of `ollama_queue_wait_seconds` when the snapshot has
//! that family) summed over endpoints, and the requests in flight. Families are read by name,
//! so a family that appears later needs no plumbing.
//!
//! Memory, from the sizes (checked by a test): a model costs `size_of::<ModelSample>()` (72
//! bytes) plus 8 bytes per bucket (18 for the request duration: 144) per sample, 216 bytes;
//! times [`SAMPLES`] (90) that is 19,440 bytes, about 19 KB per model (about 32 KB once the
//! queue-wait histogram, 18 more buckets, exists). With [`MAX_MODELS`] models: about 1.9 MB
//! at most.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::snapshot::{Family, Series};

/// Samples kept: 15 minutes at one every [`EVERY`].
pub(crate) const SAMPLES: usize = 90;
/// How often the sampling task takes a sample.
pub(crate) const EVERY: Duration = Duration::from_secs(10);
/// Models kept per sample (the busiest by requests since start): the default `max_models`
/// (100). Beyond, a sample says it is [`Sample::truncated`].
pub(crate) const MAX_MODELS: usize = crate::config::DEFAULT_MAX_MODELS;

pub(crate) const REQUESTS: &str = "ollama_requests_total";
pub(crate) const FAILED: &str = "ollama_requests_failed";
pub(crate) const TOKENS: &str = "ollama_tokens_generated_total";
pub(crate) const IN_FLIGHT: &str = "ollama_requests_in_flight";
pub(crate) const DURATION: &str = "ollama_request_duration_seconds";
/// Added by the queue-wait work; read only when present.
pub(crate) const QUEUE_WAIT: &str = "ollama_queue_wait_seconds";

/// The last [`SAMPLES`] samples, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    samples: Mutex<VecDeque<Sample>>,
}

/// One instance's counters at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    /// `ollama_requests_in_flight`, every model.
    pub(crate) in_flight: u64,
    /// Sorted by name.
    pub(crate) models: Vec<ModelSample>,
    /// Models were left out ([`MAX_MODELS`]): a model missing here is unknown, not idle.
    pub(crate) truncated: bool,
    /// Upper bounds of [`ModelSample::duration`] (the last is `+Inf`).
    pub(crate) duration_bounds: Arc<[f64]>,
    /// Upper bounds of [`ModelSample::queue_wait`]; empty without that family.
    pub(crate) queue_bounds: Arc<[f64]>,
}

/// One model's cumulative figures in a [`Sample`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelSample {
    pub(crate) name: Arc<str>,
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) tokens: u64,
    /// Cumulative bucket counts over every endpoint, one per bound (the last is the count).
    pub(crate) duration: Box<[u64]>,
    /// As `duration`, for `ollama_queue_wait_seconds`; empty without that family.
    pub(crate) queue_wait: Box<[u64]>,
}

/// What one model did between two samples: counters' increases (a counter that went down was
/// reset and counts from 0, as Prometheus' `increase`) and the time between them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delta {
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) tokens: u64,
    pub(crate) duration: Vec<u64>,
    pub(crate) queue_wait: Vec<u64>,
}

/// A model's figures as a sample knows them: its own, or all zero when the sample has no
/// entry for it and was not truncated (the model had no request yet).
struct Counts<'a> {
    requests: u64,
    failed: u64,
    tokens: u64,
    duration: &'a [u64],
    queue_wait: &'a [u64],
}

// === impl Ring ===

impl Ring {
    pub(crate) fn new() -> Ring {
        Ring::default()
    }

    /// Adds a sample, dropping the oldest beyond [`SAMPLES`]. Model names and bucket bounds
    /// equal to the previous sample's are shared with it, so they are held once.
    pub(crate) fn push(&self, mut sample: Sample) {
        let mut samples = self.samples.lock();
        if let Some(last) = samples.back() {
            for m in &mut sample.models {
                if let Some(known) = last.model(&m.name) {
                    m.name = known.name.clone();
                }
            }
            if last.duration_bounds == sample.duration_bounds {
                sample.duration_bounds = last.duration_bounds.clone();
            }
            if last.queue_bounds == sample.queue_bounds {
                sample.queue_bounds = last.queue_bounds.clone();
            }
        }
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Takes a sample of `families` (a store snapshot) at `at`.
    pub(crate) fn sample(&self, families: &[Family], at: Instant) {
        self.push(Sample::of(families, at, MAX_MODELS));
    }

    /// Runs `f` on the samples, oldest first, under the ring's lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&VecDeque<Sample>) -> R) -> R {
        f(&self.samples.lock())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.lock().len()
    }

    /// Bytes the samples hold: each sample, its models and their buckets (the shared bucket
    /// bounds and model names once each are left out: they do not grow with the samples).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.with(|samples| samples.iter().map(Sample::bytes).sum())
    }
}

/// The sample to measure "the last `window`" from at `now`: the newest one at least `window`
/// old, else the oldest.
pub(crate) fn base(samples: &VecDeque<Sample>, now: Instant, window: Duration) -> Option<&Sample> {
    samples
        .iter()
        .rev()
        .find(|s| now.saturating_duration_since(s.at) >= window)
        .or_else(|| samples.front())
}

// === impl Sample ===

impl Sample {
    /// The compact sample of a snapshot, with at most `max_models` models (the busiest):
    /// families read by name, series by their `model` label (histograms summed over
    /// `endpoint`).
    pub(crate) fn of(families: &[Family], at: Instant, max_models: usize) -> Sample {
        let family = |name: &str| families.iter().find(|f| f.name == name);
        let mut by_model: HashMap<&str, ModelSample> = HashMap::new();
        for s in family(REQUESTS).map_or(&[][..], |f| &f.series) {
            if let Some(m) = model(s) {
                let entry = by_model.entry(m).or_insert_with(|| ModelSample::empty(m));
                entry.requests = s.value as u64;
            }
        }
        let mut counter = |name: &str, set: fn(&mut ModelSample, u64)| {
            for s in family(name).map_or(&[][..], |f| &f.series) {
                if let Some(entry) = model(s).and_then(|m| by_model.get_mut(m)) {
                    set(entry, s.value as u64);
                }
            }
        };
        counter(FAILED, |m, v| m.failed = v);
        counter(TOKENS, |m, v| m.tokens = v);
        let (duration_bounds, mut duration) = buckets_by_model(family(DURATION));
        let (queue_bounds, mut queue) = buckets_by_model(family(QUEUE_WAIT));
        let in_flight =
            family(IN_FLIGHT).map_or(0.0, |f| f.series.iter().map(|s| s.value).sum::<f64>()) as u64;

        let mut models: Vec<ModelSample> = by_model.into_values().collect();
        let truncated = models.len() > max_models;
        if truncated {
            models.sort_unstable_by(|a, b| b.requests.cmp(&a.requests).then(a.name.cmp(&b.name)));
            models.truncate(max_models);
            models.shrink_to_fit();
        }
        models.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for m in &mut models {
            m.duration = duration.remove(&*m.name).unwrap_or_default().into();
            m.queue_wait = queue.remove(&*m.name).unwrap_or_default().into();
        }
        Sample {
            at,
            in_flight,
            models,
            truncated,
            duration_bounds: duration_bounds.into(),
            queue_bounds: queue_bounds.into(),
        }
    }

    /// The model's entry, if the sample has one.
    pub(crate) fn model(&self, name: &str) -> Option<&ModelSample> {
        self.models
            .binary_search_by(|m| (*m.name).cmp(name))
            .ok()
            .map(|i| &self.models[i])
    }

    /// What `name` did from `earlier` to this sample; `None` when either sample cannot say
    /// (left out by the cap) or no time passed.
    pub(crate) fn delta(&self, earlier: &Sample, name: &str) -> Option<Delta> {
        let seconds = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        let (now, then) = (self.counts(name)?, earlier.counts(name)?);
        (seconds > 0.0).then(|| Delta {
            seconds,
            requests: increase(now.requests, then.requests),
            failed: increase(now.failed, then.failed),
            tokens: increase(now.tokens, then.tokens),
            duration: increase_all(now.duration, then.duration),
            queue_wait: increase_all(now.queue_wait, then.queue_wait),
        })
    }

    fn counts(&self, name: &str) -> Option<Counts<'_>> {
        match self.model(name) {
            Some(m) => Some(Counts {
                requests: m.requests,
                failed: m.failed,
                tokens: m.tokens,
                duration: &m.duration,
                queue_wait: &m.queue_wait,
            }),
            None if self.truncated => None,
            None => Some(Counts {
                requests: 0,
                failed: 0,
                tokens: 0,
                duration: &[],
                queue_wait: &[],
            }),
        }
    }

    /// Bytes this sample holds (see [`Ring::bytes`]).
    pub(crate) fn bytes(&self) -> usize {
        let models = self.models.capacity() * std::mem::size_of::<ModelSample>();
        let buckets: usize = self
            .models
            .iter()
            .map(|m| 8 * (m.duration.len() + m.queue_wait.len()))
            .sum();
        std::mem::size_of::<Sample>() + models + buckets
    }
}

// === impl ModelSample ===

impl ModelSample {
    fn empty(name: &str) -> ModelSample {
        ModelSample {
            name: name.into(),
            requests: 0,
            failed: 0,
            tokens: 0,
            duration: Box::default(),
            queue_wait: Box::default(),
        }
    }
}

// === impl Delta ===

impl Delta {
    pub(crate) fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.seconds
    }
}

/// The `q` quantile of cumulative bucket counts (`cumulative[i]` observations `<= bounds[i]`,
/// the last bound `+Inf`), as Prometheus' `histogram_quantile`: linear within the bucket the
/// rank falls in, the first bucket starting at 0, the highest finite bound when the rank falls
/// in `+Inf`. `None` without observations.
pub(crate) fn quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    let count = *cumulative.last()?;
    if count == 0 || bounds.len() != cumulative.len() {
        return None;
    }
    let rank = q * count as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank)?;
    if bounds[i].is_infinite() {
        return bounds[..i].last().copied().or(Some(0.0));
    }
    let (lower, below) = match i {
        0 => (0.0, 0),
        _ => (bounds[i - 1], cumulative[i - 1]),
    };
    let in_bucket = (cumulative[i] - below) as f64;
    if in_bucket == 0.0 {
        return Some(bounds[i]);
    }
    Some(lower + (bounds[i] - lower) * (rank - below as f64) / in_bucket)
}

/// A counter's increase from `then` to `now`; one that went down was reset and counts from 0.
fn increase(now: u64, then: u64) -> u64 {
    if now >= then {
        now - then
    } else {
        now
    }
}

/// [`increase`] bucket by bucket; `then` empty counts as zeros, and a different layout as a
/// reset.
fn increase_all(now: &[u64], then: &[u64]) -> Vec<u64> {
    if then.len() != now.len() {
        return now.to_vec();
    }
    now.iter()
        .zip(then)
        .map(|(&n, &t)| increase(n, t))
        .collect()
}

fn model(s: &Series) -> Option<&str> {
    label(s, "model")
}

/// The value of label `name`.
pub(crate) fn label<'a>(s: &'a Series, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A histogram family's bucket bounds (`le`, ascending, `+Inf` last) and each model's
/// cumulative counts over every endpoint. Empty without the family.
fn buckets_by_model(family: Option<&Family>) -> (Vec<f64>, HashMap<&str, Vec<u64>>) {
    let Some(family) = family else {
        return (Vec::new(), HashMap::new());
    };
    let le = |s: &Series| label(s, "le").and_then(|v| v.parse::<f64>().ok());
    let buckets = || family.series.iter().filter(|s| s.suffix == "_bucket");
    let mut bounds: Vec<f64> = buckets().filter_map(le).collect();
    bounds.sort_unstable_by(f64::total_cmp);
    bounds.dedup();
    let mut by_model: HashMap<&str, Vec<u64>> = HashMap::new();
    for s in buckets() {
        let (Some(m), Some(le)) = (model(s), le(s)) else {
            continue;
        };
        let counts = by_model.entry(m).or_insert_with(|| vec![0; bounds.len()]);
        counts[bounds.partition_point(|&b| b < le)] += s.value as u64;
    }
    (bounds, by_model)
}

#[cfg(test)]
mod tests;
