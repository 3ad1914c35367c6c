//! `promtool check metrics` (Debian's prometheus package, installed by scripts/test.sh) on an
//! exposition.

use std::io::Write;
use std::process::{Command, Stdio};

/// The lint lines every exposition of the agent gets: the original plugin's two counter names
/// without `_total`, kept for compatibility, in byte order.
pub fn kept_name_findings() -> Vec<String> {
    ["ollama_requests_failed", "ollama_requests_success"]
        .iter()
        .map(|name| format!("{name} counter metrics should have \"_total\" suffix"))
        .collect()
}

/// promtool's findings on `text` (non-empty lines, sorted), its exit status (0 clean, 3 lint
/// problems only, 1 a parse error) and its whole report.
pub fn check_metrics(text: &str) -> (Vec<String>, Option<i32>, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut findings: Vec<String> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    findings.sort_unstable();
    (findings, out.status.code(), report)
}
