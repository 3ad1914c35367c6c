//! The per-instance metric store: per-model request counters, token counters and latency
//! summaries, fed by every proxied request and rendered into a [`Family`] snapshot.
//!
//! Hot path: a read lock on the model map (`get(&str)`, no allocation), relaxed atomic adds,
//! and a short per-window mutex for the latency rings. The map's write lock is only taken the
//! first time a model is seen.

pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::snapshot::{Family, Kind, Labels};
use window::{nearest_rank, Window};

/// Window size the plugin used: quantiles over the last 1000 observations per model.
pub const DEFAULT_WINDOW: usize = 1000;

/// Quantile label values and their ranks for `ollama_response_duration_seconds`.
const RESPONSE_QUANTILES: [(&str, f64); 5] = [
    ("0", 0.0),
    ("0.5", 0.5),
    ("0.95", 0.95),
    ("0.99", 0.99),
    ("1", 1.0),
];
/// Quantile label values and their ranks for `ollama_model_load_duration_seconds`.
const LOAD_QUANTILES: [(&str, f64); 2] = [("0.5", 0.5), ("0.95", 0.95)];

// Summary help texts; the window size is named when it is the default.
const RESPONSE_HELP_DEFAULT: &str = "Response duration measured by the proxy from request \
    arrival to last byte, seconds; quantiles over the last 1000 successful requests, \
    sum and count over all since start.";
const RESPONSE_HELP: &str = "Response duration measured by the proxy from request arrival \
    to last byte, seconds; quantiles over a window of the most recent successful requests, \
    sum and count over all since start.";
const LOAD_HELP_DEFAULT: &str = "Model load duration reported by Ollama (load_duration), \
    seconds; quantiles over the last 1000 successful requests that reported one, \
    sum and count over all since start.";
const LOAD_HELP: &str = "Model load duration reported by Ollama (load_duration), seconds; \
    quantiles over a window of the most recent successful requests that reported one, \
    sum and count over all since start.";

/// All metrics of one tap instance; shared as `Arc<Store>` by every request.
#[derive(Debug)]
pub struct Store {
    window: usize,
    up: AtomicBool,
    models: RwLock<HashMap<Box<str>, Arc<ModelStats>>>,
}

/// One finished proxied inference request, as the tap saw it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub model: &'a str,
    pub outcome: Outcome,
    /// empty prompt / done_reason load|unload: counted as a request, kept out of token and
    /// latency figures
    pub load_only: bool,
    /// `prompt_eval_count`
    pub prompt_tokens: Option<u64>,
    /// `eval_count`
    pub eval_tokens: Option<u64>,
    /// `load_duration`, nanoseconds
    pub load_duration_ns: Option<u64>,
    /// measured by the agent: arrival → last byte
    pub duration: Duration,
}

/// How a proxied request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed,
}

/// Counters and windows of one model.
#[derive(Debug)]
struct ModelStats {
    requests: AtomicU64,
    success: AtomicU64,
    failed: AtomicU64,
    tokens_generated: AtomicU64,
    prompt_tokens: AtomicU64,
    response: Mutex<Window>,
    load: Mutex<Window>,
}

/// A model's figures copied out for rendering.
struct Copied {
    model: String,
    requests: u64,
    success: u64,
    failed: u64,
    tokens_generated: u64,
    prompt_tokens: u64,
    stats: Arc<ModelStats>,
}

// === impl Store ===

impl Store {
    /// An empty store whose summaries compute quantiles over the last `window` observations.
    pub fn new(window: usize) -> Self {
        Store {
            window,
            up: AtomicBool::new(false),
            models: RwLock::new(HashMap::new()),
        }
    }

    /// Accounts one finished request.
    pub fn record(&self, r: &Record<'_>) {
        let stats = self.stats_for(r.model);
        stats.requests.fetch_add(1, Relaxed);
        match r.outcome {
            Outcome::Success => stats.success.fetch_add(1, Relaxed),
            Outcome::Failed => stats.failed.fetch_add(1, Relaxed),
        };
        if r.outcome != Outcome::Success || r.load_only {
            return;
        }
        stats
            .tokens_generated
            .fetch_add(r.eval_tokens.unwrap_or(0), Relaxed);
        stats
            .prompt_tokens
            .fetch_add(r.prompt_tokens.unwrap_or(0), Relaxed);
        stats.response.lock().observe(r.duration.as_secs_f64());
        if let Some(ns) = r.load_duration_ns {
            stats.load.lock().observe(ns as f64 / 1e9);
        }
    }

    /// ollama_up: 1 when the backend answered the last check
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }

    /// Every family, in a fixed order, with series sorted by model.
    pub fn snapshot(&self) -> Vec<Family> {
        let mut copied: Vec<Copied> = {
            let models = self.models.read();
            models
                .iter()
                .map(|(m, s)| Copied {
                    model: m.to_string(),
                    requests: s.requests.load(Relaxed),
                    success: s.success.load(Relaxed),
                    failed: s.failed.load(Relaxed),
                    tokens_generated: s.tokens_generated.load(Relaxed),
                    prompt_tokens: s.prompt_tokens.load(Relaxed),
                    stats: Arc::clone(s),
                })
                .collect()
        };
        copied.sort_unstable_by(|a, b| a.model.cmp(&b.model));

        let mut up = Family::new(
            "ollama_up",
            "1 when the Ollama backend answered the last health check, else 0.",
            Kind::Gauge,
        );
        up.push(
            "",
            Vec::new(),
            if self.up.load(Relaxed) { 1.0 } else { 0.0 },
        );

        let counter = |name, help, get: fn(&Copied) -> u64| {
            let mut f = Family::new(name, help, Kind::Counter);
            for c in &copied {
                f.push("", model_labels(&c.model), get(c) as f64);
            }
            f
        };
        let requests = counter(
            "ollama_requests_total",
            "Proxied inference requests, by model.",
            |c| c.requests,
        );
        let success = counter(
            "ollama_requests_success",
            "Proxied inference requests that completed successfully, by model.",
            |c| c.success,
        );
        let failed = counter(
            "ollama_requests_failed",
            "Proxied inference requests that failed, by model.",
            |c| c.failed,
        );
        let tokens = counter(
            "ollama_tokens_generated_total",
            "Tokens generated (eval_count) by successful requests, by model.",
            |c| c.tokens_generated,
        );
        let prompt = counter(
            "ollama_prompt_tokens_total",
            "Prompt tokens evaluated (prompt_eval_count) by successful requests, by model.",
            |c| c.prompt_tokens,
        );

        let mut response = Family::new(
            "ollama_response_duration_seconds",
            if self.window == DEFAULT_WINDOW {
                RESPONSE_HELP_DEFAULT
            } else {
                RESPONSE_HELP
            },
            Kind::Summary,
        );
        let mut load = Family::new(
            "ollama_model_load_duration_seconds",
            if self.window == DEFAULT_WINDOW {
                LOAD_HELP_DEFAULT
            } else {
                LOAD_HELP
            },
            Kind::Summary,
        );
        let mut buf = Vec::with_capacity(self.window);
        for c in &copied {
            push_summary(
                &mut response,
                &c.model,
                &c.stats.response,
                &RESPONSE_QUANTILES,
                &mut buf,
            );
            push_summary(
                &mut load,
                &c.model,
                &c.stats.load,
                &LOAD_QUANTILES,
                &mut buf,
            );
        }

        vec![
            up, requests, success, failed, tokens, prompt, response, load,
        ]
    }

    /// distinct models currently tracked
    pub fn models(&self) -> usize {
        self.models.read().len()
    }

    /// The stats of `model`, created on first sight.
    fn stats_for(&self, model: &str) -> Arc<ModelStats> {
        if let Some(s) = self.models.read().get(model) {
            return Arc::clone(s);
        }
        let mut models = self.models.write();
        let s = models
            .entry(Box::from(model))
            .or_insert_with(|| Arc::new(ModelStats::new(self.window)));
        Arc::clone(s)
    }
}

/// `[("model", m)]`
fn model_labels(model: &str) -> Labels {
    vec![("model".to_owned(), model.to_owned())]
}

/// Appends one model's quantile, `_sum` and `_count` series. The window is copied into `buf`
/// under its lock and sorted after the lock is released. No quantile series when the window is
/// empty (they would be NaN).
fn push_summary(
    family: &mut Family,
    model: &str,
    window: &Mutex<Window>,
    quantiles: &[(&'static str, f64)],
    buf: &mut Vec<f64>,
) {
    buf.clear();
    let (sum, count) = {
        let w = window.lock();
        buf.extend_from_slice(w.values());
        (w.sum(), w.count())
    };
    if !buf.is_empty() {
        buf.sort_unstable_by(f64::total_cmp);
        for &(label, q) in quantiles {
            let labels = vec![
                ("model".to_owned(), model.to_owned()),
                ("quantile".to_owned(), label.to_owned()),
            ];
            family.push("", labels, nearest_rank(buf, q));
        }
    }
    family.push("_sum", model_labels(model), sum);
    family.push("_count", model_labels(model), count as f64);
}

// === impl ModelStats ===

impl ModelStats {
    fn new(window: usize) -> Self {
        ModelStats {
            requests: AtomicU64::new(0),
            success: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            tokens_generated: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            response: Mutex::new(Window::new(window)),
            load: Mutex::new(Window::new(window)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn ok(model: &str, prompt: u64, eval: u64, ms: u64) -> Record<'_> {
        Record {
            model,
            outcome: Outcome::Success,
            load_only: false,
            prompt_tokens: Some(prompt),
            eval_tokens: Some(eval),
            load_duration_ns: None,
            duration: Duration::from_millis(ms),
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

    #[test]
    fn empty_store_has_every_family_in_order() {
        let store = Store::new(DEFAULT_WINDOW);
        let fams = store.snapshot();
        let got: Vec<_> = fams
            .iter()
            .map(|f| (f.name, f.kind, f.series.len()))
            .collect();
        let (c, s) = (Kind::Counter, Kind::Summary);
        let want = [
            ("ollama_up", Kind::Gauge, 1),
            ("ollama_requests_total", c, 0),
            ("ollama_requests_success", c, 0),
            ("ollama_requests_failed", c, 0),
            ("ollama_tokens_generated_total", c, 0),
            ("ollama_prompt_tokens_total", c, 0),
            ("ollama_response_duration_seconds", s, 0),
            ("ollama_model_load_duration_seconds", s, 0),
        ];
        assert_eq!(got, want);
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
            load_duration_ns: load,
            ..ok("m", 1, 2, 500)
        });
        // failed: counted, but no tokens or latency
        store.record(&Record {
            outcome: Outcome::Failed,
            ..ok("m", 100, 100, 9000)
        });
        // load-only success: counted, but no tokens or latency
        let load = Some(9_000_000_000);
        store.record(&Record {
            load_only: true,
            load_duration_ns: load,
            ..ok("m", 9, 9, 9000)
        });
        // absent token counts add nothing
        store.record(&Record {
            prompt_tokens: None,
            eval_tokens: None,
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
            outcome: Outcome::Failed,
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
    fn concurrent_records_are_exact() {
        const THREADS: u64 = 8;
        const PER: u64 = 10_000;
        let store = Arc::new(Store::new(DEFAULT_WINDOW));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    for i in 0..PER {
                        let model = ["a", "b", "c"][((t + i) % 3) as usize];
                        let failed = i % 10 == 0;
                        let outcome = if failed {
                            Outcome::Failed
                        } else {
                            Outcome::Success
                        };
                        let load = Some(1_000_000);
                        store.record(&Record {
                            outcome,
                            load_duration_ns: load,
                            ..ok(model, 2, 3, 1)
                        });
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
        let f = store.snapshot();
        let total = |fam: usize, suffix: &str| -> f64 {
            f[fam]
                .series
                .iter()
                .filter(|s| s.suffix == suffix)
                .map(|s| s.value)
                .sum()
        };
        let all = (THREADS * PER) as f64;
        let failed = all / 10.0;
        let success = all - failed;
        assert_eq!(total(1, ""), all);
        assert_eq!(total(2, ""), success);
        assert_eq!(total(3, ""), failed);
        assert_eq!(total(4, ""), 3.0 * success);
        assert_eq!(total(5, ""), 2.0 * success);
        assert_eq!(total(6, "_count"), success);
        assert_eq!(total(7, "_count"), success);
        for m in 0..3 {
            let v = |fam: usize| f[fam].series[m].value;
            assert_eq!(v(1), v(2) + v(3));
        }
        assert_eq!(store.models(), 3);
    }
}
