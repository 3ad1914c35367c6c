//! The live status page: `/status.json` shows exactly the traffic the real binary metered,
//! `/status` shows the same numbers without script and with it (headless Chromium runs the
//! page's script and a screenshot is saved for a person to look at), both ask for the
//! credentials `/metrics` asks for, and a hostile model name is text, never markup.

use crate::common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use common::docs::STATUS_PAGE;
use common::fake_ollama::{self, FakeOllama};
use common::receiver::{Receiver, Script};
use common::{Binary, ConfDir};

/// A model name made to break a page that pastes names into its markup.
const HOSTILE: &str = "test-<script>alert(1)</script><b onmouseover=\"x\">'&";
/// Its label: Ollama's resolution adds the default tag.
const HOSTILE_LABEL: &str = "test-<script>alert(1)</script><b onmouseover=\"x\">'&:latest";

/// How long Chromium may take to start, load the page, run its script and exit: generous, it
/// only ever fails a broken case (the test waits for the process to exit, not for a clock).
const BROWSER_WAIT: Duration = Duration::from_secs(120);

/// The real binary in front of the fake, with a writer whose URL carries credentials.
struct Setup {
    agent: Binary,
    /// The agent's proxy port, `http://…`.
    base: String,
    fake: FakeOllama,
    receiver: Receiver,
}

async fn setup(extra: &str) -> Setup {
    let fake = FakeOllama::start().await;
    let receiver = Receiver::start(Script::Always(204)).await;
    let writer = receiver.url().replace("http://", "http://user:pw@");
    let agent = Binary::start(ConfDir::new(
        &format!("[global]\nhostname = \"h\"\ninterval = 1\n[[writers]]\nurl = \"{writer}\"\n"),
        &format!(
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n{extra}\n",
            fake.url()
        ),
    ))
    .await;
    let base = agent.url();
    Setup {
        agent,
        base,
        fake,
        receiver,
    }
}

/// `GET url` with an optional bearer token: status and body.
async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Polls `{base}/status.json` until `pred` holds; returns that answer.
async fn status_until(base: &str, token: Option<&str>, pred: impl Fn(&Value) -> bool) -> Value {
    let pred = &pred;
    common::eventually("status.json to hold the condition", move || async move {
        let (code, body) = get(&format!("{base}/status.json"), token).await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if pred(&v) {
            Ok(v)
        } else {
            Err(format!("{v:#}"))
        }
    })
    .await
}

/// The ring holds at least `n` samples.
fn samples(n: u64) -> impl Fn(&Value) -> bool {
    move |v| v["history"]["samples"].as_u64().unwrap() >= n
}

/// Nothing in flight, the backend checked and up, and `requests` metered in all.
fn settled(requests: u64) -> impl Fn(&Value) -> bool {
    move |v| {
        let total: u64 = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["requests"].as_u64().unwrap())
            .sum();
        v["in_flight"] == 0 && v["backend"]["up"] == true && total == requests
    }
}

async fn generate(base: &str, model: &str, prompt: &str, stream: bool) -> u16 {
    let res = common::generate(base, model, prompt, stream).await;
    let status = res.status().as_u16();
    res.bytes().await.unwrap();
    status
}

/// Three llama3.2 requests (5 tokens each, one streamed), two qwen2.5 requests of which one
/// fails with a 500 (2 tokens for the other).
async fn two_models_and_a_failure(base: &str) {
    for stream in [false, true, false] {
        assert_eq!(
            generate(base, "llama3.2", "hi [[tokens:5]]", stream).await,
            200
        );
    }
    assert_eq!(
        generate(base, "qwen2.5:0.5b", "hi [[tokens:2]]", false).await,
        200
    );
    assert_eq!(
        generate(base, "qwen2.5:0.5b", "[[error_after:0]]", true).await,
        500
    );
}

/// The model table's rows in a page: (name as written in the markup, requests, failed).
fn model_rows(html: &str) -> Vec<(String, u64, u64)> {
    let section = html
        .split_once("<section id=\"models\">")
        .and_then(|(_, rest)| rest.split_once("</section>"))
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("no models section in\n{html}"));
    let cell = |row: &str, class: &str| -> String {
        let open = format!("<td class=\"{class}\">");
        let (_, rest) = row
            .split_once(&open)
            .unwrap_or_else(|| panic!("no {open} in {row}"));
        rest.split_once("</td>").unwrap().0.to_owned()
    };
    section
        .split("<tr>")
        .filter(|row| row.contains("<td class=\"name\">"))
        .map(|row| {
            (
                cell(row, "name"),
                cell(row, "num requests").parse().unwrap(),
                cell(row, "num failed").parse().unwrap(),
            )
        })
        .collect()
}

/// `s` as it must appear in markup: text, with `& < > " '` as entities.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn status_json_shows_exactly_the_models_and_counts_of_the_traffic() {
    let Setup {
        base,
        fake,
        receiver,
        ..
    } = &setup("").await;
    // The first sample is taken at start: wait for it so the recent figures cover the traffic.
    status_until(base, None, samples(1)).await;
    two_models_and_a_failure(base).await;
    let v = status_until(base, None, settled(5)).await;

    let models: Vec<(&str, u64, u64, u64)> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let n = |k: &str| m[k].as_u64().unwrap();
            (
                m["model"].as_str().unwrap(),
                n("requests"),
                n("failed"),
                n("tokens"),
            )
        })
        .collect();
    assert_eq!(
        models,
        [("llama3.2:latest", 3, 0, 15), ("qwen2.5:0.5b", 2, 1, 2)],
        "{v:#}"
    );
    for m in v["models"].as_array().unwrap() {
        let recent = &m["recent"];
        assert_eq!(recent["requests"], m["requests"], "{m:#}");
        assert_eq!(recent["failed"], m["failed"], "{m:#}");
        assert_eq!(recent["tokens"], m["tokens"], "{m:#}");
        assert!(
            recent["requests_per_second"].as_f64().unwrap() > 0.0,
            "{m:#}"
        );
        assert!(recent["p95_seconds"].as_f64().unwrap() > 0.0, "{m:#}");
        assert_eq!(m["in_flight"], 0);
    }
    let qwen = &v["models"][1]["recent"];
    assert_eq!(qwen["error_ratio"], 0.5, "{qwen:#}");

    let backend = &v["backend"];
    assert_eq!(backend["up"], true);
    assert_eq!(backend["version"], fake_ollama::VERSION);
    assert_eq!(backend["url"], fake.url());
    assert_eq!(backend["loaded"][0]["model"], "llama3.2:latest");
    assert_eq!(backend["loaded"][0]["vram_share"], 1.0);
    assert_eq!(backend["loaded"][0]["context_length"], 4096);

    // The writer's URL without its credentials, as the push's own metrics name it.
    let writers = v["writers"].as_array().unwrap();
    assert_eq!(writers.len(), 1, "{v:#}");
    assert_eq!(writers[0]["url"], receiver.url());
    for key in [
        "seconds_since_last_success",
        "queue_samples",
        "dropped_samples",
    ] {
        assert!(writers[0][key].is_number(), "{key}: {v:#}");
    }
    // The families being added in parallel are shown only once the store has them.
    let exported = common::metrics_at(base).await.0;
    for (key, family) in [
        ("queue_wait", "ollama_queue_wait_seconds"),
        ("clients", "ollama_client_requests_total"),
    ] {
        let present = exported.contains(&format!("# TYPE {family} "));
        assert_eq!(!v[key].is_null(), present, "{key}: {v:#}");
    }
    assert_eq!(v["history"]["capacity"], 90);
    assert_eq!(v["history"]["interval_seconds"], 10);
    assert_eq!(v["refresh_seconds"], 5);

    // Without script (curl, w3m): the same numbers, rendered by the agent.
    let (code, html) = get(&format!("{base}/status"), None).await;
    assert_eq!(code, 200);
    assert!(html.contains("<main id=\"status\" data-src=\"server\">"));
    assert_eq!(
        model_rows(&html),
        [
            ("llama3.2:latest".to_owned(), 3, 0),
            ("qwen2.5:0.5b".to_owned(), 2, 1)
        ]
    );
    assert!(!html.contains("user:pw"), "credentials shown:\n{html}");
}

/// The ```json example under docs/status-page.md's "Status page" heading.
fn readme_example() -> Value {
    let section = STATUS_PAGE
        .split_once("\n## Status page\n")
        .expect("docs/status-page.md has a Status page section")
        .1;
    let json = section
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the section has a json example")
        .0;
    serde_json::from_str(json).unwrap_or_else(|e| panic!("docs/status-page.md's example: {e}"))
}

/// Where `live` and the documented example differ in shape: keys of objects, kinds of values,
/// arrays by their first element. `null` on either side (a figure that can be unknown, a
/// section whose family is absent) matches anything.
fn shape_differences(doc: &Value, live: &Value, at: &str, out: &mut Vec<String>) {
    match (doc, live) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(d), Value::Object(l)) => {
            for k in d.keys().filter(|k| !l.contains_key(*k)) {
                out.push(format!("{at}.{k}: documented, not answered"));
            }
            for k in l.keys().filter(|k| !d.contains_key(*k)) {
                out.push(format!("{at}.{k}: answered, not documented"));
            }
            for (k, dv) in d {
                if let Some(lv) = l.get(k) {
                    shape_differences(dv, lv, &format!("{at}.{k}"), out);
                }
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            if let (Some(dv), Some(lv)) = (d.first(), l.first()) {
                shape_differences(dv, lv, &format!("{at}[]"), out);
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        _ => out.push(format!("{at}: documented {doc}, answered {live}")),
    }
}

#[tokio::test]
async fn status_json_has_the_shape_the_readme_documents() {
    let Setup { base, .. } = &setup("").await;
    status_until(base, None, samples(1)).await;
    two_models_and_a_failure(base).await;
    let live = status_until(base, None, settled(5)).await;
    let mut differences = Vec::new();
    shape_differences(&readme_example(), &live, "", &mut differences);
    assert!(differences.is_empty(), "{differences:#?}\n{live:#}");
}

#[tokio::test]
async fn status_pages_ask_for_the_same_credentials_as_metrics() {
    let Setup { base, .. } = &setup("metrics_bearer_token = \"s3cret\"").await;
    for path in ["/metrics", "/status", "/status.json"] {
        let url = format!("{base}{path}");
        let (code, body) = get(&url, None).await;
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.starts_with("{\"error\":"), "{path}: {body}");
        assert_eq!(get(&url, Some("wrong")).await.0, 401, "{path}");
        assert_eq!(get(&url, Some("s3cret")).await.0, 200, "{path}");
    }
    // The proxy itself asks for nothing.
    assert_eq!(get(&format!("{base}/api/version"), None).await.0, 200);
}

#[tokio::test]
async fn with_a_metrics_listener_the_status_page_moves_there_and_the_proxy_forwards_status() {
    let Setup { agent, base, .. } = &setup("metrics_listen_addr = \"127.0.0.1:0\"").await;
    let own = format!("http://{}", agent.metrics_addrs[0]);
    assert_ne!(&own, base);
    assert_eq!(get(&format!("{own}/status"), None).await.0, 200);
    assert_eq!(get(&format!("{own}/status.json"), None).await.0, 200);
    // Ollama has no /status: its 404, through the proxy.
    let (code, body) = get(&format!("{base}/status"), None).await;
    assert_eq!((code, body.as_str()), (404, "404 page not found"));
}

#[tokio::test]
async fn a_hostile_model_name_is_text_in_the_html_not_markup() {
    let Setup { base, .. } = &setup("").await;
    assert_eq!(generate(base, HOSTILE, "hi [[tokens:1]]", false).await, 200);
    let v = status_until(base, None, settled(1)).await;
    assert_eq!(
        v["models"][0]["model"], HOSTILE_LABEL,
        "JSON carries the name as it is"
    );

    let (_, html) = get(&format!("{base}/status"), None).await;
    assert!(html.contains(&escaped(HOSTILE_LABEL)), "{html}");
    assert_eq!(model_rows(&html), [(escaped(HOSTILE_LABEL), 1, 0)]);
    // The page's own script is its only one, and nothing of the name became a tag.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("<b onmouseover"), "{html}");
}

/// Chromium (Debian's `chromium`, or `chromium-browser`) in headless mode on `url` with `args`,
/// its own profile, waited for until it exits (at most [`BROWSER_WAIT`]).
async fn chromium(args: &[&str], url: &str) -> Output {
    static N: AtomicUsize = AtomicUsize::new(0);
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("chromium is installed (scripts/test.sh installs Debian's chromium package)");
    let profile = std::env::temp_dir().join(format!(
        "ollama-tap-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let child = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args([
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Virtual time: the page's timers run as fast as the page can, and the browser stops
        // once the page has been idle for 3 s of it (its first refresh is at once).
        .arg("--virtual-time-budget=3000")
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let out = tokio::time::timeout(BROWSER_WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not exit within {BROWSER_WAIT:?}"))
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `target/status-page.png` (next to cargo's target/tmp).
fn screenshot_path() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("status-page.png")
}

#[tokio::test]
async fn headless_chromium_shows_the_models_and_counts_after_the_script_ran_and_saves_a_screenshot()
{
    let Setup { base, .. } = &setup("").await;
    // Two waves between three ring samples (one every 10 s), so that the sparklines in the
    // screenshot have a line to draw.
    status_until(base, None, samples(1)).await;
    two_models_and_a_failure(base).await;
    status_until(base, None, samples(2)).await;
    two_models_and_a_failure(base).await;
    assert_eq!(generate(base, HOSTILE, "hi [[tokens:1]]", false).await, 200);
    status_until(base, None, samples(3)).await;
    status_until(base, None, settled(11)).await;

    let page = format!("{base}/status");
    let dom = chromium(&["--dump-dom"], &page).await;
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(
        dom.contains("<main id=\"status\" data-src=\"json\">"),
        "the script did not render /status.json:\n{dom}"
    );
    assert!(dom.contains("live: updated"), "{dom}");
    assert_eq!(
        model_rows(&dom),
        [
            ("llama3.2:latest".to_owned(), 6, 0),
            ("qwen2.5:0.5b".to_owned(), 4, 2),
            // Chromium serialises text with only & < > as entities.
            (
                HOSTILE_LABEL
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;"),
                1,
                0
            ),
        ],
        "{dom}"
    );
    assert!(!dom.contains("<b onmouseover"), "{dom}");
    assert!(dom.contains("<svg class=\"spark"), "{dom}");

    let png = screenshot_path();
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    chromium(&[&shot, "--window-size=1000,800"], &page).await;
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, height) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((width, height), (1000, 800));
    // A blank 1000x800 PNG compresses to a few KB; a page of tables and lines does not.
    assert!(bytes.len() > 20_000, "{} bytes: a blank page?", bytes.len());
    eprintln!("screenshot: {}", png.display());
}
