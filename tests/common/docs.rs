//! The repository's documents as data: their tables (docs/metrics.md's name exactly the exported
//! families, tests/readme.rs holds that), their links and headings, and the series a PromQL text
//! reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

pub const README: &str = include_str!("../../README.md");
/// Every metric family, in tables whose first column is `name`.
pub const METRICS: &str = include_str!("../../docs/metrics.md");
/// Every configuration key, in tables headed `` `[global]` key ``, `instance key`, ...
pub const CONFIGURATION: &str = include_str!("../../docs/configuration.md");
/// The systemd unit, in the `unit line` table.
pub const SERVICE: &str = include_str!("../../docs/service.md");
/// `/status.json`'s example, under `## Status page`.
pub const STATUS_PAGE: &str = include_str!("../../docs/status-page.md");
/// The source layout, under `## Source layout`.
pub const CONTRIBUTING: &str = include_str!("../../CONTRIBUTING.md");

/// A file of the repository, by its path from the root.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Fails unless `python3 scripts/<script> --check` passes: the committed files are what the
/// generator writes (PyYAML and the rest are installed by scripts/test.sh).
pub fn assert_generated_by(script: &str) {
    let out = Command::new("python3")
        .args([&format!("scripts/{script}"), "--check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cells of a markdown table row, trimmed; `None` for a line that is not a row.
fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// Every markdown table of `text` under a `##`/`###` heading: (heading, header cells, rows).
pub fn tables(text: &str) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
            continue;
        }
        let Some(header) = cells(line) else { continue };
        if !lines
            .peek()
            .is_some_and(|l| l.trim_start().starts_with("|---"))
        {
            continue;
        }
        lines.next();
        let mut rows = Vec::new();
        while let Some(row) = lines.peek().and_then(|l| cells(l)) {
            rows.push(row.iter().map(|c| c.to_string()).collect());
            lines.next();
        }
        let header = header.iter().map(|c| c.to_string()).collect();
        out.push((heading.clone(), header, rows));
    }
    out
}

/// The backticked words of a cell (`` `a`, `b` `` → a, b).
pub fn ticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Every `ticked` name in the first column of the tables of `text` whose first header is
/// `header` (e.g. the `metric` table of the README, the `unit line` table of the service doc).
pub fn ticked_in_column(text: &str, header: &str) -> Vec<String> {
    tables(text)
        .into_iter()
        .filter(|(_, head, _)| head.first().map(String::as_str) == Some(header))
        .flat_map(|(_, _, rows)| rows)
        .flat_map(|row| {
            ticked(&row[0])
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Metric families the metric tables of docs/metrics.md name, with the type a table states (if
/// any).
pub fn documented_families() -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for (_, header, rows) in tables(METRICS) {
        if header.first().map(String::as_str) != Some("name") {
            continue;
        }
        let type_col = header.iter().position(|h| h == "type");
        for row in rows {
            for name in ticked(&row[0]) {
                let ty = type_col.map(|i| row[i].clone());
                out.insert(name.to_string(), ty);
            }
        }
    }
    out
}

/// The `ollama_…` and `gen_ai_client_…` / `gen_ai_server_…` series a PromQL text (or any
/// text) reads, as family names (`gen_ai_request_model` and the other `gen_ai_` labels are not
/// families): `_bucket`, `_sum` and `_count` series count as their family.
pub fn series_in(text: &str) -> BTreeSet<String> {
    const PREFIXES: [&str; 3] = ["ollama_", "gen_ai_client_", "gen_ai_server_"];
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = PREFIXES.iter().filter_map(|p| rest.find(p)).min() {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
    out
}
