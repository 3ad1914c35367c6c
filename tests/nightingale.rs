//! Nightingale's built-in metric descriptions (`integrations/Ollama/metrics/ollama-tap.json`)
//! are what `scripts/n9e_metrics.py` writes, describe every family in README's metric tables
//! (which tests/readme.rs holds equal to what the agent exports), in Chinese and English, and
//! query nothing else.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The families of README's metric tables: rows that start with an `ollama_…` name.
fn documented() -> BTreeSet<String> {
    read("README.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `ollama_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("ollama_{name}"))
        .filter(|name| name != "ollama_url")
        .collect()
}

/// The `ollama_…` series an expression reads, as family names (`_bucket` removed).
fn families_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("ollama_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        out.insert(name.strip_suffix("_bucket").unwrap_or(name).to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_metric_descriptions_are_generated_by_the_script() {
    let out = Command::new("python3")
        .args(["scripts/n9e_metrics.py", "--check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_exported_family_is_described_in_chinese_and_english_and_nothing_else_is() {
    let all = documented();
    assert!(all.len() >= 30, "{all:?}");
    let json: serde_json::Value =
        serde_json::from_str(&read("integrations/Ollama/metrics/ollama-tap.json")).unwrap();
    let mut described = BTreeSet::new();
    for m in json.as_array().expect("a JSON array") {
        let expr = m["expression"].as_str().unwrap();
        let read_here = families_in(expr);
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
