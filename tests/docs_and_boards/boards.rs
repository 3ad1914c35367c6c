//! The operator's kit against real data: agents in front of the fake Ollama serve a traffic mix
//! (two models and a third past `max_models`, streamed and not, native and OpenAI, a 404, a
//! mid-stream error) and push into a real Prometheus. Then every expression of the Grafana board,
//! the Nightingale board, the n9e metric view and both rule files must parse and draw at least
//! one series with a number. A fleet of three agents gives one fleet-wide P95 and a series per
//! host. The board files' shape is checked against what Grafana and n9e read.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use common::docs::{assert_generated_by, documented_families, read, series_in};
use common::fake_ollama::FakeOllama;
use common::prometheus::Prometheus;
use common::{Binary, ConfDir};
use serde_json::Value;

const GRAFANA: &str = "dashboards/grafana/ollama-tap.json";
const N9E: &str = "integrations/Ollama/dashboards/ollama-tap.json";
const N9E_ALERTS: &str = "integrations/Ollama/alerts/ollama-tap.json";
const N9E_METRICS: &str = "integrations/Ollama/metrics/ollama-tap.json";
const RULES: &str = "alerts/ollama-tap.rules.yml";

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn strs<'a>(v: impl IntoIterator<Item = &'a Value>, key: &str) -> Vec<String> {
    v.into_iter()
        .filter_map(|x| x[key].as_str().map(str::to_owned))
        .collect()
}

/// The Grafana board's panel expressions, `label_values(...)` variable definitions aside.
fn grafana_exprs(board: &Value) -> Vec<String> {
    let panels = board["panels"].as_array().unwrap();
    strs(
        panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten()),
        "expr",
    )
}

fn n9e_exprs(board: &Value) -> Vec<String> {
    let panels = board["configs"]["panels"].as_array().unwrap();
    strs(
        panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten()),
        "expr",
    )
}

fn query_vars(vars: &[Value]) -> impl Iterator<Item = &str> {
    vars.iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["definition"].as_str().unwrap())
}

/// `label_values(selector, label)` as the PromQL that returns one series per value.
fn label_values_as_promql(definition: &str) -> String {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values(...): {definition}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    format!("count by ({}) ({})", label.trim(), selector.trim())
}

/// The rules' `expr`s, read by PyYAML (scripts/test.sh installs it).
fn rule_exprs() -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([r['expr'] for g in \
             yaml.safe_load(open(sys.argv[1]))['groups'] for r in g['rules']]))",
            RULES,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 with PyYAML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Splits an alert expression at its outermost comparison or set operator (`> 30`, `== 0`,
/// `unless on (...)`): the operands are what the alert watches, and each must exist on real
/// data even while the alert is (rightly) silent. Scalar operands are left out.
fn operands(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let (mut depth, mut quote, mut split) = (0i32, None, None);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'(' | b'{' | b'[') => depth += 1,
            (None, b')' | b'}' | b']') => depth -= 1,
            (None, _) if depth == 0 => {
                let rest = &expr[i..];
                let op = [
                    "==", "!=", ">=", "<=", ">", "<", " unless ", " and ", " or ",
                ]
                .into_iter()
                .find(|op| rest.starts_with(op) && !rest.starts_with("=~"));
                if let Some(op) = op {
                    split = Some((i, op.len()));
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let Some((at, len)) = split else {
        return vec![expr.trim().to_owned()];
    };
    let mut right = expr[at + len..].trim();
    for modifier in ["bool ", "on", "ignoring"] {
        if let Some(r) = right.strip_prefix(modifier) {
            let r = r.trim_start();
            right = if r.starts_with('(') {
                r[r.find(')').unwrap() + 1..].trim_start()
            } else {
                r
            };
        }
    }
    let mut out = operands(&expr[..at]);
    if right.parse::<f64>().is_err() {
        out.extend(operands(right));
    }
    out
}

/// What a board's variables and windows become in the test: one host, every model.
fn substitute(expr: &str, host_var: &str, host: &str) -> String {
    expr.replace(&format!("${host_var}"), host)
        .replace("$model", ".*")
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
}

/// Runs `expr` and fails unless it parses and returns a series with a number (not NaN).
async fn assert_draws(prom: &Prometheus, what: &str, expr: &str, failures: &mut Vec<String>) {
    match prom.try_query(expr).await {
        Err(e) => failures.push(format!("{what}: {expr}\n    does not parse: {e}")),
        Ok(series) if series.is_empty() => {
            failures.push(format!("{what}: {expr}\n    returns no series"))
        }
        Ok(series) => {
            let numbers = series
                .iter()
                .filter(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"))
                .count();
            if numbers == 0 {
                failures.push(format!("{what}: {expr}\n    returns only NaN: {series:?}"));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The agents and their traffic

/// An agent pushing every second into `prom`, in front of its own fake Ollama, with
/// `max_models = 2` so the mix's third model lands in `model="other"`, and a disk queue. `host` is its
/// `agent_hostname`, or with `ident` the label n9e would have stored instead (n9e renames
/// `agent_hostname` to `ident` on receipt; such an agent sends `ident` and no hostname).
async fn agent(prom: &Prometheus, host: &str, ident: bool) -> (FakeOllama, Binary) {
    let fake = FakeOllama::start().await;
    let global = if ident {
        format!("omit_hostname = true\n[global.labels]\nident = \"{host}\"\n")
    } else {
        format!("hostname = \"{host}\"\n")
    };
    let conf = ConfDir::new(
        &format!(
            "[global]\ninterval = 1\n{global}[[writers]]\nurl = \"{}\"\n",
            prom.write_url()
        ),
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n\
             timeout = \"10s\"\nmax_models = 2\notel_semconv = true\nclient_headers = [\"X-User\"]\n\
             [instances.labels]\nservice = \"ollama\"\n",
            fake.url()
        ),
    );
    // A disk queue, so that its gauge and its drop reasons have series too.
    let main = conf.path().join("config.toml");
    let queue = conf.path().join("queue");
    let text = std::fs::read_to_string(&main).unwrap();
    let text = format!("{text}[writer_opt]\nqueue_dir = \"{}\"\n", queue.display());
    std::fs::write(main, text).unwrap();
    let agent = Binary::start(conf).await;
    (fake, agent)
}

/// Requests in one [`traffic`] mix, every one metered.
const MIX_REQUESTS: usize = 8;

/// The mix, once: every request's answer is read to its end.
async fn traffic(agent: &Binary) {
    let client = reqwest::Client::new();
    let base = agent.url();
    let calls: &[(&str, &str, u16)] = &[
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"why is the sky blue","stream":false}"#,
            200,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"tell me a story [[tokens:8]]"}"#,
            200,
        ),
        (
            "/api/chat",
            r#"{"model":"qwen2.5:0.5b","messages":[{"role":"user","content":"hello there"}]}"#,
            200,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#,
            200,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"qwen2.5:0.5b","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count to five"}]}"#,
            200,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"fail midway [[error_after:2]]"}"#,
            200,
        ),
        (
            "/api/generate",
            r#"{"model":"gemma3:1b","prompt":"a third model","stream":false}"#,
            200,
        ),
        (
            "/api/generate",
            r#"{"model":"no-such-model","prompt":"x","stream":false}"#,
            404,
        ),
    ];
    assert_eq!(calls.len(), MIX_REQUESTS);
    // two named clients (the X-User header the agents read) and some nobody named
    for (i, (path, body, status)) in calls.iter().enumerate() {
        let mut req = client.post(format!("{base}{path}")).body(*body);
        if i % 3 != 2 {
            req = req.header("X-User", ["alice", "bob"][i % 3]);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), *status, "{path} {body}");
        res.bytes().await.unwrap();
    }
}

/// Two waves of the mix, each seen by Prometheus before the next, so every counter and bucket
/// has grown between two samples inside a one-minute window (rates are numbers, not 0/0).
async fn two_waves(prom: &Prometheus, agents: &[(&str, &str, &Binary)]) {
    for wave in 1..=2 {
        for (_, _, a) in agents {
            traffic(a).await;
        }
        let total = (wave * MIX_REQUESTS) as f64;
        for (label, host, a) in agents {
            a.wait_metrics(|m| m.sum("ollama_requests_total", &[]) == total)
                .await;
            prom.wait_for_value(
                &format!("sum(ollama_requests_total{{{label}=\"{host}\"}})"),
                &total.to_string(),
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_board_panel_variable_and_alert_expression_draws_a_number_on_real_traffic() {
    let prom = Prometheus::start().await;
    let (_fake_p, prom_shaped) = agent(&prom, "gpu-p", false).await;
    let (_fake_n, n9e_shaped) = agent(&prom, "gpu-n", true).await;
    two_waves(
        &prom,
        &[
            ("agent_hostname", "gpu-p", &prom_shaped),
            ("ident", "gpu-n", &n9e_shaped),
        ],
    )
    .await;

    let grafana = json(GRAFANA);
    let n9e = json(N9E);
    // (what, expression) as a user of each file runs it against the series as stored
    let mut checks: Vec<(String, String)> = Vec::new();
    for e in grafana_exprs(&grafana) {
        checks.push((
            "grafana panel".into(),
            substitute(&e, "agent_hostname", "gpu-p"),
        ));
    }
    for d in query_vars(grafana["templating"]["list"].as_array().unwrap()) {
        let e = substitute(&label_values_as_promql(d), "agent_hostname", "gpu-p");
        checks.push(("grafana variable".into(), e));
    }
    for e in n9e_exprs(&n9e) {
        checks.push(("n9e panel".into(), substitute(&e, "ident", "gpu-n")));
    }
    for d in query_vars(n9e["configs"]["var"].as_array().unwrap()) {
        let e = substitute(&label_values_as_promql(d), "ident", "gpu-n");
        checks.push(("n9e variable".into(), e));
    }
    for e in rule_exprs() {
        for o in operands(&e) {
            checks.push((format!("{RULES} operand of {}", e.trim()), o));
        }
    }
    for rule in json(N9E_ALERTS).as_array().unwrap() {
        let e = rule["rule_config"]["queries"][0]["prom_ql"]
            .as_str()
            .unwrap();
        for o in operands(e) {
            checks.push((format!("n9e alert {}", rule["name"]), o));
        }
    }
    for m in json(N9E_METRICS).as_array().unwrap() {
        checks.push((
            format!("n9e metric {}", m["name"]),
            m["expression"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(checks.len() > 100, "{} expressions", checks.len());
    eprintln!("{} expressions against real data", checks.len());

    let mut failures = Vec::new();
    for (what, expr) in &checks {
        assert!(
            !expr.contains('$'),
            "{what}: unsubstituted variable in {expr}"
        );
        assert_draws(&prom, what, expr, &mut failures).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions draw nothing:\n{}",
        failures.len(),
        checks.len(),
        failures.join("\n")
    );
}

/// The target `n` (0-based) of the Grafana panel titled `title`.
fn grafana_target(board: &Value, title: &str, n: usize) -> String {
    let panel = board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?} in {GRAFANA}"));
    panel["targets"][n]["expr"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_agents_gives_one_fleet_wide_p95_and_one_series_per_host() {
    let prom = Prometheus::start().await;
    let mut fleet = Vec::new();
    for host in ["gpu-1", "gpu-2", "gpu-3"] {
        fleet.push((host, agent(&prom, host, false).await));
    }
    let agents: Vec<_> = fleet
        .iter()
        .map(|(host, (_, a))| ("agent_hostname", *host, a))
        .collect();
    two_waves(&prom, &agents).await;

    let board = json(GRAFANA);
    let all = |e: String| substitute(&e, "agent_hostname", ".*");
    let values = |series: &[Value], label: &str| -> BTreeSet<String> {
        series
            .iter()
            .map(|s| s["metric"][label].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let fleet_p95 = all(grafana_target(&board, "Fleet-wide request duration P95", 0));
    let series = prom.query(&fleet_p95).await;
    assert_eq!(series.len(), 1, "{fleet_p95}: {series:?}");
    let p95: f64 = series[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(p95 > 0.0 && p95.is_finite(), "{fleet_p95} = {p95}");

    let per_model = all(grafana_target(&board, "Fleet-wide request duration P95", 1));
    let series = prom.query(&per_model).await;
    let models: BTreeSet<String> = ["llama3.2:latest", "other", "qwen2.5:0.5b"]
        .map(String::from)
        .into();
    assert_eq!(values(&series, "model"), models, "{per_model}");

    let hosts: BTreeSet<String> = ["gpu-1", "gpu-2", "gpu-3"].map(String::from).into();
    for (title, n) in [
        ("Request duration P95 per host", 0),
        ("Requests per host", 0),
        ("Backend up per host", 0),
    ] {
        let e = all(grafana_target(&board, title, n));
        let series = prom.query(&e).await;
        assert_eq!(series.len(), 3, "{title}: {e}: {series:?}");
        assert_eq!(values(&series, "agent_hostname"), hosts, "{title}: {e}");
    }
    // one host selected: the fleet panels narrow to it
    let one = substitute(
        &grafana_target(&board, "Requests per host", 0),
        "agent_hostname",
        "gpu-2",
    );
    let series = prom.query(&one).await;
    assert_eq!(
        values(&series, "agent_hostname"),
        ["gpu-2".to_owned()].into()
    );
}

// ------------------------------------------------------------------------------------------------
// The files' shape

#[test]
fn the_boards_are_what_scripts_boards_py_writes() {
    assert_generated_by("boards.py");
}

#[test]
fn the_grafana_board_has_a_unique_uid_unique_panel_ids_and_a_datasource_variable() {
    let board = json(GRAFANA);
    assert_eq!(board["uid"], "ollama-tap");
    assert!(board["title"].as_str().is_some_and(|t| !t.is_empty()));
    let panels = board["panels"].as_array().unwrap();
    let ids: BTreeSet<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids repeat");
    let vars = board["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(ds["query"], "prometheus");
    let names = strs(vars, "name");
    for want in ["datasource", "agent_hostname", "model"] {
        assert!(names.iter().any(|n| n == want), "no ${want} variable");
    }
    assert!(
        vars.iter().any(|v| v["type"] == "adhoc"),
        "no instance-label filter"
    );
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(
            p["fieldConfig"]["defaults"]["unit"].is_string(),
            "{}",
            p["title"]
        );
        let pos = &p["gridPos"];
        assert!(pos["x"].as_i64().unwrap() + pos["w"].as_i64().unwrap() <= 24);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            assert!(t["refId"].is_string());
        }
    }
    let rows = strs(panels.iter().filter(|p| p["type"] == "row"), "title");
    assert_eq!(
        rows,
        [
            "Requests",
            "Tokens",
            "Performance",
            "Saturation",
            "Model usage",
            "Clients",
            "Fleet",
            "Agent health"
        ]
    );
    // latency panels read the aggregatable histograms, never the per-host summaries
    for e in grafana_exprs(&board) {
        assert!(!e.contains("quantile=\""), "{e}");
        assert!(!e.contains("ollama_response_duration_seconds"), "{e}");
    }
    assert!(panels.iter().any(|p| p["type"] == "heatmap"));
}

#[test]
fn the_nightingale_board_has_every_key_n9e_reads() {
    let board = json(N9E);
    for key in ["name", "ident", "note"] {
        assert!(board[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(board["tags"].is_string(), "tags is a string in n9e");
    assert!(board["uuid"].as_i64().unwrap() > 0);
    let configs = &board["configs"];
    assert_eq!(configs["version"], "3.0.0");
    let vars = configs["var"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(
        (ds["name"].as_str(), ds["definition"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["cate"], "prometheus");
        assert_eq!(v["datasource"]["value"], "${datasource}");
    }
    assert_eq!(strs(vars, "name"), ["datasource", "ident", "model"]);
    let panels = configs["panels"].as_array().unwrap();
    let ids: BTreeSet<&str> = panels.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids repeat");
    for p in panels {
        let kind = p["type"].as_str().unwrap();
        assert!(
            ["stat", "gauge", "timeseries", "barGauge", "barchart", "row"].contains(&kind),
            "{kind}"
        );
        let l = &p["layout"];
        for k in ["h", "w", "x", "y"] {
            assert!(l[k].is_i64(), "layout.{k} of {}", p["name"]);
        }
        assert_eq!(l["i"], p["id"]);
        if kind == "row" {
            continue;
        }
        assert_eq!(p["version"], "3.4.0");
        assert_eq!(p["datasourceCate"], "prometheus");
        assert_eq!(p["datasourceValue"], "${datasource}");
        assert!(p["options"]["standardOptions"]["unit"].is_string());
        for t in p["targets"].as_array().unwrap() {
            for k in ["expr", "legend", "refId"] {
                assert!(t[k].is_string(), "targets.{k} of {}", p["name"]);
            }
        }
    }
}

#[test]
fn nightingales_files_name_the_host_ident_as_n9e_stores_it() {
    for path in [
        N9E,
        N9E_ALERTS,
        N9E_METRICS,
        "integrations/Ollama/markdown/README.md",
    ] {
        let text = read(path);
        let code: String = text
            .lines()
            .filter(|l| !l.contains("renames") && !l.contains("sends `agent_hostname`"))
            .collect();
        assert!(
            !code.contains("agent_hostname"),
            "{path} names agent_hostname"
        );
    }
    assert!(read(N9E_ALERTS).contains("$labels.ident"));
}

#[test]
fn the_boards_read_only_series_the_agent_exports() {
    let exported = documented_families();
    for (path, exprs) in [
        (GRAFANA, grafana_exprs(&json(GRAFANA))),
        (N9E, n9e_exprs(&json(N9E))),
    ] {
        let used = series_in(&exprs.join("\n"));
        assert!(used.len() >= 20, "{path}: {used:?}");
        for family in used {
            assert!(
                exported.contains_key(&family),
                "{path} reads {family}, not in the tables of docs/metrics.md"
            );
        }
    }
}

#[test]
fn an_alert_is_split_into_the_operands_it_watches() {
    assert_eq!(operands("ollama_up == 0"), ["ollama_up"]);
    assert_eq!(
        operands("(sum by (m) (rate(a[5m])) / sum by (m) (rate(b[5m]))) > 0.05"),
        ["(sum by (m) (rate(a[5m])) / sum by (m) (rate(b[5m])))"]
    );
    assert_eq!(
        operands("group by (h) (max_over_time(up[1h]))\n  unless on (h)\ngroup by (h) (up)"),
        ["group by (h) (max_over_time(up[1h]))", "group by (h) (up)"]
    );
    assert_eq!(operands(r#"x{a=~"b>c"} > 1"#), [r#"x{a=~"b>c"}"#]);
    assert_eq!(
        label_values_as_promql(r#"label_values(up{a=~"$b"}, host)"#),
        r#"count by (host) (up{a=~"$b"})"#
    );
}
