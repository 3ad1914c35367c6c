//! Tests through the text exposition: the gauges and the overhead histogram as rendered,
//! and a self-check of a whole rendered snapshot.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::exposition::render;
use crate::store::{InFlight, LoadedModel, Store};
use crate::vocab::{Endpoint, FinishReason, Outcome, Record, Usage};

/// The lines of family `name` in the rendered exposition, without HELP and TYPE.
fn lines(store: &Store, name: &str) -> Vec<String> {
    let mut out = String::new();
    render(&store.snapshot(), &mut out);
    out.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ', '_']))
        .map(str::to_owned)
        .collect()
}

fn loaded(name: &str, size: u64, vram: u64, ctx: Option<u64>) -> LoadedModel {
    LoadedModel {
        name: name.to_owned(),
        size_bytes: size,
        vram_bytes: vram,
        context_length: ctx,
    }
}

#[test]
fn backend_info_absent_until_a_version_is_known() {
    let store = Store::new(10);
    assert!(lines(&store, "ollama_backend_info").is_empty());
    store.set_backend_version(Some("0.12.3"));
    let want = ["ollama_backend_info{version=\"0.12.3\"} 1"];
    assert_eq!(lines(&store, "ollama_backend_info"), want);
    store.set_backend_version(Some(""));
    assert!(lines(&store, "ollama_backend_info").is_empty());
    store.set_backend_version(Some("0.13.0"));
    store.set_backend_version(None);
    assert!(lines(&store, "ollama_backend_info").is_empty());
}

#[test]
fn loaded_models_are_replaced_wholesale() {
    let store = Store::new(10);
    store.set_loaded_models(vec![
        loaded("qwen3:8b", 6_000, 4_000, Some(8192)),
        loaded("llama3:8b", 5_000, 0, None),
        loaded("qwen3:8b", 1, 1, None), // duplicate name: the first wins
    ]);
    assert_eq!(
        lines(&store, "ollama_loaded_model_size_bytes"),
        [
            "ollama_loaded_model_size_bytes{model=\"llama3:8b\"} 5000",
            "ollama_loaded_model_size_bytes{model=\"qwen3:8b\"} 6000",
        ]
    );
    assert_eq!(
        lines(&store, "ollama_loaded_model_vram_bytes"),
        [
            "ollama_loaded_model_vram_bytes{model=\"llama3:8b\"} 0",
            "ollama_loaded_model_vram_bytes{model=\"qwen3:8b\"} 4000",
        ]
    );
    assert_eq!(
        lines(&store, "ollama_loaded_model_context_length"),
        ["ollama_loaded_model_context_length{model=\"qwen3:8b\"} 8192"]
    );
    store.set_loaded_models(vec![loaded("gemma3:1b", 9, 9, Some(4096))]);
    assert_eq!(
        lines(&store, "ollama_loaded_model_size_bytes"),
        ["ollama_loaded_model_size_bytes{model=\"gemma3:1b\"} 9"]
    );
    store.set_loaded_models(Vec::new());
    for name in [
        "ollama_loaded_model_size_bytes",
        "ollama_loaded_model_vram_bytes",
        "ollama_loaded_model_context_length",
    ] {
        assert!(lines(&store, name).is_empty(), "{name}");
    }
}

#[test]
fn overhead_histogram_has_no_labels() {
    let store = Store::new(10);
    store.observe_overhead(Duration::from_micros(5));
    store.observe_overhead(Duration::from_micros(30));
    store.observe_overhead(Duration::from_millis(200));
    let got = lines(&store, "ollama_tap_proxy_overhead_seconds");
    let b = "ollama_tap_proxy_overhead_seconds_bucket";
    assert_eq!(got[0], format!("{b}{{le=\"1e-05\"}} 1"));
    assert_eq!(got[1], format!("{b}{{le=\"2.5e-05\"}} 1"));
    assert_eq!(got[2], format!("{b}{{le=\"5e-05\"}} 2"));
    assert_eq!(got[12], format!("{b}{{le=\"0.1\"}} 2"));
    assert_eq!(got[13], format!("{b}{{le=\"+Inf\"}} 3"));
    assert_eq!(got[14], "ollama_tap_proxy_overhead_seconds_sum 0.200035");
    assert_eq!(got[15], "ollama_tap_proxy_overhead_seconds_count 3");
    assert_eq!(got.len(), 16);
}

/// A valid metric or label name.
fn valid_name(s: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// Splits `name{k="v",...} value` (label values without `,` or `"`).
fn parse(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (head, value) = line.rsplit_once(' ').unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap(),
    };
    let Some((name, rest)) = head.split_once('{') else {
        return (head.to_owned(), Vec::new(), value);
    };
    let labels = rest
        .strip_suffix('}')
        .unwrap()
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect();
    (name.to_owned(), labels, value)
}

/// A store with every endpoint recorded, a success and a failure each, on two models, and
/// every other family set (a request in flight as long as the guard lives).
fn self_check_store() -> (Store, InFlight) {
    let store = Store::new(10);
    store.set_up(true);
    store.set_backend_version(Some("0.12.3"));
    store.set_loaded_models(vec![loaded("qwen3:8b", 6, 4, Some(8192))]);
    store.observe_overhead(Duration::from_micros(40));
    let guard = store.begin("qwen3:8b");
    for (i, e) in Endpoint::ALL.into_iter().enumerate() {
        let ms = 7 * i as u64 + 3;
        store.record(&Record {
            model: ["qwen3:8b", "llama3:8b"][i % 2],
            endpoint: e,
            outcome: Outcome::Http(200),
            load_only: false,
            usage: Usage {
                prompt_tokens: Some(12),
                completion_tokens: e.generates().then_some(40),
                cached_prompt_tokens: Some(4),
                total_duration_ns: Some(ms * 11_100_000 + 2_000_000),
                load_duration_ns: Some(ms * 1_000_000),
                prompt_eval_duration_ns: Some(ms * 100_000),
                eval_duration_ns: Some(ms * 10_000_000),
            },
            finish_reason: e.generates().then_some(FinishReason::Length),
            duration: Duration::from_millis(ms * 100),
            ttft: e.generates().then(|| Duration::from_millis(ms)),
            client: None,
        });
        store.record(&Record {
            model: "qwen3:8b",
            endpoint: e,
            outcome: Outcome::BackendUnreachable,
            load_only: false,
            usage: Usage::default(),
            finish_reason: None,
            duration: Duration::from_millis(ms),
            ttft: None,
            client: None,
        });
    }
    (store, guard)
}

/// What the self check gathers while reading the exposition line by line.
#[derive(Default)]
struct Seen {
    kinds: HashMap<String, String>,
    series: HashSet<(String, Vec<(String, String)>)>,
    /// (family, labels without le) → (last bucket, +Inf bucket, _count)
    hists: HashMap<String, (f64, Option<f64>, Option<f64>)>,
}

impl Seen {
    /// Checks one line of the exposition against what came before it.
    fn line(&mut self, line: &str) {
        let Seen {
            kinds,
            series: seen,
            hists,
        } = self;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(valid_name(name, true) && !help.is_empty(), "{line}");
            return;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                kinds.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            return;
        }
        let (name, labels, value) = parse(line);
        assert!(valid_name(&name, true), "{line}");
        assert!(labels.iter().all(|(k, _)| valid_name(k, false)), "{line}");
        assert!(value.is_finite() && value >= 0.0, "{line}");
        assert!(
            seen.insert((name.clone(), labels.clone())),
            "duplicate: {line}"
        );
        let family = ["_bucket", "_sum", "_count", ""]
            .iter()
            .map(|s| name.strip_suffix(s).unwrap_or(&name))
            .find(|f| kinds.contains_key(*f))
            .unwrap_or_else(|| panic!("no TYPE for {line}"))
            .to_owned();
        match kinds[&family].as_str() {
            "histogram" => {}
            "summary" => {
                let suffix = &name[family.len()..];
                let quantile = labels.iter().any(|(k, _)| k == "quantile");
                assert!(matches!(
                    (suffix, quantile),
                    ("", true) | ("_sum" | "_count", false)
                ));
                return;
            }
            _ => {
                assert_eq!(name, family, "{line}");
                return;
            }
        }
        let le = labels
            .iter()
            .find(|(k, _)| k == "le")
            .map(|(_, v)| v.clone());
        let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").collect();
        let key = format!("{family}{rest:?}");
        let entry = hists.entry(key).or_insert((0.0, None, None));
        match (name.strip_prefix(&family).unwrap(), le.as_deref()) {
            ("_bucket", Some("+Inf")) => entry.1 = Some(value),
            ("_bucket", Some(_)) => {
                assert!(value >= entry.0, "not cumulative: {line}");
                entry.0 = value;
            }
            ("_sum", None) => {}
            ("_count", None) => entry.2 = Some(value),
            _ => panic!("unexpected histogram series: {line}"),
        }
    }
}

#[test]
fn rendered_exposition_passes_self_check() {
    let (store, _guard) = self_check_store();
    let mut text = String::new();
    render(&store.snapshot(), &mut text);

    let mut seen = Seen::default();
    for line in text.lines() {
        seen.line(line);
    }
    let Seen { kinds, hists, .. } = seen;
    assert_eq!(kinds.len(), crate::store::families::COUNT);
    // 13 (model, endpoint) pairs: qwen3:8b on all 9 endpoints, llama3:8b on the 4 odd ones.
    // A histogram has series once observed: request duration on all 13 pairs (the failures
    // too), prompt eval and load on the 9 pairs with a success, ttft, tpot, tokens per second
    // and queue wait on the 6 generating ones among those, and the overhead one.
    assert_eq!(hists.len(), 13 + 2 * 9 + 4 * 6 + 1, "{:?}", hists.keys());
    for (key, (last, inf, count)) in hists {
        let (inf, count) = (inf.unwrap(), count.unwrap());
        assert_eq!(inf, count, "{key}");
        assert!(last <= inf, "{key}");
    }
}
