//! Nightingale's built-in metric descriptions (`integrations/Ollama/metrics/ollama-tap.json`)
//! are what `scripts/n9e_metrics.py` writes, describe every family in docs/metrics.md's tables
//! (which tests/readme.rs holds equal to what the agent exports), in Chinese and English, and
//! query nothing else.

use crate::common;

use std::collections::BTreeSet;

use common::docs::{assert_generated_by, documented_families, read, series_in};

#[test]
fn the_metric_descriptions_are_generated_by_the_script() {
    assert_generated_by("n9e_metrics.py");
}

#[test]
fn every_exported_family_is_described_in_chinese_and_english_and_nothing_else_is() {
    let all: BTreeSet<String> = documented_families().into_keys().collect();
    assert!(all.len() >= 30, "{all:?}");
    let json: serde_json::Value =
        serde_json::from_str(&read("integrations/Ollama/metrics/ollama-tap.json")).unwrap();
    let mut described = BTreeSet::new();
    for m in json.as_array().expect("a JSON array") {
        let expr = m["expression"].as_str().unwrap();
        let read_here = series_in(expr);
        assert!(!read_here.is_empty(), "{expr}");
        for family in &read_here {
            assert!(
                all.contains(family),
                "{expr} reads {family}, which the agent does not export"
            );
        }
        described.extend(read_here);
        assert_eq!(m["collector"], "ollama-tap");
        let langs: Vec<&str> = m["translation"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|t| {
                assert!(!t["name"].as_str().unwrap().is_empty(), "{m}");
                assert!(!t["note"].as_str().unwrap().is_empty(), "{m}");
            })
            .map(|t| t["lang"].as_str().unwrap())
            .collect();
        assert_eq!(langs, ["zh_CN", "en_US"], "{m}");
    }
    let missing: Vec<&String> = all.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "families without a description: {missing:?}"
    );
}
