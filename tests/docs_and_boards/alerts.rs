//! The alert rules in `alerts/` are valid (`promtool check rules`), each alert fires when it
//! should and stays silent when it should not (`promtool test rules`, the cases in
//! `alerts/ollama-tap.rules.test.yml`), every series they read is one the agent exports, and
//! Nightingale's copy (`integrations/Ollama/alerts/ollama-tap.json`) is generated from them.

use crate::common;

use std::process::Command;

use common::docs::{assert_generated_by, documented_families, read, series_in};

const RULES: &str = "alerts/ollama-tap.rules.yml";
const RULE_TESTS: &str = "alerts/ollama-tap.rules.test.yml";

/// promtool's exit status and its whole report.
fn promtool(args: &[&str]) -> (i32, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus package)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn the_rules_are_valid_prometheus_rules() {
    let (code, report) = promtool(&["check", "rules", RULES]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("SUCCESS: 9 rules found"), "{report}");
}

#[test]
fn every_alert_fires_when_it_should_and_stays_silent_when_it_should_not() {
    let (code, report) = promtool(&["test", "rules", RULE_TESTS]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("SUCCESS"), "{report}");
    // one test group per alert
    let rules = read(RULES);
    let tests = read(RULE_TESTS);
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no promtool case"
        );
    }
}

#[test]
fn the_rules_read_only_series_the_agent_exports() {
    let exported = documented_families();
    let used = series_in(&read(RULES));
    let want = [
        "ollama_queue_wait_seconds",
        "ollama_request_duration_seconds",
        "ollama_requests_failed",
        "ollama_requests_total",
        "ollama_tap_remote_write_samples_dropped_total",
        "ollama_tap_remote_write_seconds_since_last_success",
        "ollama_time_to_first_token_seconds",
        "ollama_up",
    ];
    assert_eq!(used.iter().map(String::as_str).collect::<Vec<_>>(), want);
    for family in used {
        assert!(
            exported.contains_key(&family),
            "{RULES} reads {family}, which is not in the tables of docs/metrics.md"
        );
    }
}

#[test]
fn the_nightingale_rules_are_generated_from_the_prometheus_rules() {
    assert_generated_by("n9e_alerts.py");
    // and the JSON is n9e's shape: one prometheus rule per alert, the same PromQL
    let n9e: serde_json::Value =
        serde_json::from_str(&read("integrations/Ollama/alerts/ollama-tap.json")).unwrap();
    let rules = read(RULES);
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let n9e = n9e.as_array().expect("a JSON array of rules");
    let names: Vec<&str> = n9e.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, alerts);
    for rule in n9e {
        assert_eq!(rule["cate"], "prometheus");
        assert_eq!(rule["prod"], "metric");
        assert_eq!(rule["rule_config"]["version"], "v1");
        let query = &rule["rule_config"]["queries"][0];
        let promql = query["prom_ql"].as_str().unwrap();
        // the same PromQL, with the host named as n9e stores it (scripts/n9e_names.py)
        assert!(!promql.contains("agent_hostname"), "{promql}");
        let as_prometheus = promql.replace("ident", "agent_hostname");
        assert!(
            rules.contains(as_prometheus.lines().next().unwrap()),
            "{promql}"
        );
        assert!([1, 2, 3].contains(&query["severity"].as_i64().unwrap()));
    }
}
