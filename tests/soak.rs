//! Load and soak through the real binary: many concurrent streaming `/api/generate` requests,
//! each held open for a while by the fake's `[[delay:MS]]` and then by its `[[gate]]` until
//! every stream is open at once (an event, not a clock). Every client gets its stream
//! byte-exact, the counters are exact afterwards, and the agent's peak RSS, file descriptors and
//! threads stay bounded.
//!
//! Size: `OLLAMA_TAP_SOAK_CLIENTS` concurrent clients (default 1000), each stream held about
//! `OLLAMA_TAP_SOAK_SECS` seconds (default 5, the CI size). The full-size soak (CONTRIBUTING.md):
//!
//! ```sh
//! OLLAMA_TAP_SOAK_SECS=60 cargo test --release --test soak -- --nocapture
//! ```

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_ollama::{self, FakeOllama};
use common::{wait_until, Binary, ConfDir};

const MIB: f64 = 1024.0 * 1024.0;
/// Each stream sends one line every `LINE_MS` (`[[delay:LINE_MS]]`).
const LINE_MS: u64 = 250;
/// The agent's peak RSS limit during the soak.
const RSS_LIMIT: u64 = 200 * 1024 * 1024;
/// Idle pooled connections the agent may keep to its backend (`POOL_IDLE` in src/proxy.rs).
const POOL_IDLE: usize = 100;
/// Threads the agent may add under load over its idle count (tokio's blocking pool, if used).
const THREAD_SLACK: u64 = 8;
const MODEL: &str = "test-soak";
const LABEL: &str = "test-soak:latest";

/// The real binary in front of `backend` (no backend check during the soak).
async fn agent(backend: &str) -> Binary {
    Binary::start(ConfDir::new(
        "[global]\nhostname = \"soak-host\"\ninterval = 60\n",
        &format!(
            "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n"
        ),
    ))
    .await
}

fn env_or(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// `line` with the value of `created_at` (the only field that differs between runs) replaced
/// by `*`; checks that it looks like Ollama's RFC 3339 timestamp.
fn mask_created_at(line: &str) -> Result<String, String> {
    const KEY: &str = "\"created_at\":\"";
    let start = line.find(KEY).ok_or("no created_at")? + KEY.len();
    let len = line[start..].find('"').ok_or("unterminated created_at")?;
    let ts = &line[start..start + len];
    if !(ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T') {
        return Err(format!("created_at {ts:?} is not RFC 3339"));
    }
    Ok(format!("{}*{}", &line[..start], &line[start + len..]))
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Checks one whole answer against what the fake sends for `prompt`: every line byte for byte
/// except `created_at`, the reply text, and the final line's counts.
fn check_stream(body: &[u8], prompt: &str) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let text = text.strip_suffix('\n').ok_or("no final newline")?;
    let lines: Vec<&str> = text.split('\n').collect();
    let tokens = fake_ollama::reply_tokens(prompt);
    if lines.len() != tokens.len() + 1 {
        return Err(format!("{} lines, want {}", lines.len(), tokens.len() + 1));
    }
    let mut reply = String::new();
    for (i, (line, token)) in lines.iter().zip(&tokens).enumerate() {
        let want = format!(
            "{{\"model\":{},\"created_at\":\"*\",\"response\":{},\"done\":false}}",
            json(MODEL),
            json(token)
        );
        let got = mask_created_at(line)?;
        if got != want {
            return Err(format!("line {i}: {got} instead of {want}"));
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        reply.push_str(v["response"].as_str().unwrap_or_default());
    }
    if reply != fake_ollama::reply_text(prompt) {
        return Err(format!("reply {reply:?}"));
    }
    let m = fake_ollama::expected_metrics(prompt, None);
    let mut want = format!(
        "{{\"model\":{},\"created_at\":\"*\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"context\":[1,2,3]",
        json(MODEL)
    );
    for (k, v) in [
        ("total_duration", m.total_duration),
        ("load_duration", m.load_duration),
        ("prompt_eval_count", m.prompt_eval_count.unwrap_or(0)),
        ("prompt_eval_duration", m.prompt_eval_duration),
        ("eval_count", m.eval_count.unwrap_or(0)),
        ("eval_duration", m.eval_duration),
    ] {
        if v != 0 {
            want.push_str(&format!(",\"{k}\":{v}"));
        }
    }
    want.push('}');
    let last = mask_created_at(lines[tokens.len()])?;
    if last != want {
        return Err(format!("final line: {last} instead of {want}"));
    }
    Ok(())
}

/// What one client saw.
struct Done {
    took: Duration,
    bytes: usize,
}

/// One streamed `/api/generate`, read chunk by chunk and checked; `started` counts the clients
/// whose first line arrived.
async fn one_stream(
    client: reqwest::Client,
    url: String,
    prompt: String,
    started: Arc<AtomicUsize>,
) -> Result<Done, String> {
    let t0 = Instant::now();
    let body = serde_json::json!({ "model": MODEL, "prompt": prompt }).to_string();
    let mut res = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    if res.status() != 200 {
        return Err(format!("status {}", res.status()));
    }
    let ct = res.headers().get("content-type").cloned();
    if ct.as_ref().map(|v| v.as_bytes()) != Some(b"application/x-ndjson") {
        return Err(format!("content-type {ct:?}"));
    }
    let mut all = Vec::new();
    let mut first = true;
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("body: {e}"))? {
        all.extend_from_slice(&chunk);
        if first {
            first = false;
            started.fetch_add(1, Ordering::SeqCst);
        }
    }
    check_stream(&all, &prompt)?;
    Ok(Done {
        took: t0.elapsed(),
        bytes: all.len(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_held_through_the_agent_stay_exact_and_bounded() {
    let clients = env_or("OLLAMA_TAP_SOAK_CLIENTS", 1000);
    let secs = env_or("OLLAMA_TAP_SOAK_SECS", 5).max(1) as u64;
    // This process holds a client socket and the fake's socket per stream; the agent two.
    let own_limit = common::raise_fd_limit() as usize;
    assert!(
        own_limit >= 2 * clients + 200,
        "the hard limit of open files is {own_limit}: too low for {clients} clients (each needs a client and a backend socket here); raise it (`ulimit -Hn`) or set OLLAMA_TAP_SOAK_CLIENTS"
    );
    // `LINE_MS` before each of the tokens + 1 lines: about `secs` seconds per stream, then the
    // gate holds the done line until every stream is open.
    let tokens = ((secs * 1000 / LINE_MS) as usize).saturating_sub(1).max(1);

    let fake = FakeOllama::start().await;
    let mut agent = agent(&fake.url()).await;
    let agent_limit = agent.max_open_files();
    assert!(
        agent_limit as usize >= 2 * clients + 100,
        "the agent's fd limit {agent_limit} cannot hold {clients} client and {clients} backend sockets"
    );
    // One request first: a model's first request is in flight under `other` (it has no label
    // of its own yet). Counters below are deltas from here.
    let admin = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let warm = "warm up [[tokens:2]]".to_string();
    one_stream(
        admin.clone(),
        format!("{}/api/generate", agent.url()),
        warm.clone(),
        Arc::new(AtomicUsize::new(0)),
    )
    .await
    .expect("warm-up stream");
    let l = [("model", LABEL)];
    let m0 = agent
        .wait_metrics(|m| m.value("ollama_requests_total", &l) == 1.0)
        .await;
    let base = agent.stats();
    println!(
        "soak: {clients} clients x {tokens} tokens, one line every {LINE_MS} ms (~{secs} s per stream), then held until all are open; agent idle: VmRSS {:.1} MB, {} fds, {} threads, fd limit {agent_limit}",
        base.rss_kb as f64 * 1024.0 / MIB,
        base.fds,
        base.threads
    );

    // One connection per stream, closed when its answer ends.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let url = format!("{}/api/generate", agent.url());
    let prompts: Vec<String> = (0..clients)
        .map(|i| format!("soak client {i} [[tokens:{tokens}]] [[delay:{LINE_MS}]] [[gate]]"))
        .collect();
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let fut = one_stream(client.clone(), url.clone(), p.clone(), started.clone());
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(3 * secs + 120),
                fut,
            ))
        })
        .collect();

    // Every stream is open at once: each client has its first line, and none can end before
    // the gate opens. The agent says so, exactly, and holds both sockets of each.
    wait_until("every client has its first line", || {
        started.load(Ordering::SeqCst) == clients
    })
    .await;
    let all_open = agent
        .wait_metrics(|m| m.value("ollama_requests_in_flight", &l) == clients as f64)
        .await;
    let peak = agent.stats();
    let opened = t0.elapsed();
    fake.open_gate();

    let mut results = Vec::with_capacity(clients);
    for t in tasks {
        results.push(match t.await.expect("client task") {
            Ok(r) => r,
            Err(_) => Err("no end within the time limit".to_string()),
        });
    }
    let wall = t0.elapsed();
    drop(client);

    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("client {i}: {e}")))
        .collect();
    let ok: Vec<&Done> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let min = ok.iter().map(|d| d.took).min().unwrap_or_default();
    let max = ok.iter().map(|d| d.took).max().unwrap_or_default();
    let bytes: usize = ok.iter().map(|d| d.bytes).sum();
    println!(
        "soak: {} of {clients} streams byte-exact in {:.1} s wall (each {:.1}..{:.1} s), {:.1} MB streamed; all {clients} open at once after {:.1} s ({} in flight on /metrics, {} agent fds)",
        ok.len(),
        wall.as_secs_f64(),
        min.as_secs_f64(),
        max.as_secs_f64(),
        bytes as f64 / MIB,
        opened.as_secs_f64(),
        all_open.value("ollama_requests_in_flight", &l),
        peak.fds,
    );
    assert!(
        failures.is_empty(),
        "{} of {clients} streams failed, first ones: {:#?}\nagent log:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        agent.logs()
    );

    // Counters, exact.
    let m = agent
        .wait_metrics(|m| {
            m.value("ollama_requests_total", &l) - m0.value("ollama_requests_total", &l)
                >= clients as f64
                && m.value("ollama_requests_in_flight", &l) == 0.0
        })
        .await;
    let n = clients as f64;
    let prompt_tokens: u64 = prompts.iter().map(|p| fake_ollama::prompt_tokens(p)).sum();
    let counters = [
        ("ollama_requests_total", n),
        ("ollama_requests_success", n),
        ("ollama_requests_failed", 0.0),
        ("ollama_tokens_generated_total", n * tokens as f64),
        ("ollama_prompt_tokens_total", prompt_tokens as f64),
    ];
    let delta =
        |name: &str, labels: &[(&str, &str)]| m.value(name, labels) - m0.value(name, labels);
    for (name, want) in counters {
        assert_eq!(delta(name, &l), want, "{name}");
    }
    let e = [
        ("model", LABEL),
        ("endpoint", "/api/generate"),
        ("outcome", "200"),
    ];
    assert_eq!(delta("ollama_endpoint_requests_total", &e), n);
    assert_eq!(
        delta("ollama_response_duration_seconds_count", &l),
        n,
        "every stream timed"
    );
    let stats = fake.stats();
    let warm_eval = fake_ollama::reply_tokens(&warm).len() as u64;
    let warm_prompt = fake_ollama::prompt_tokens(&warm);
    assert_eq!(
        stats.eval_tokens_sent,
        clients as u64 * tokens as u64 + warm_eval
    );
    assert_eq!(stats.prompt_tokens_sent, prompt_tokens + warm_prompt);
    assert_eq!(stats.disconnects, 0);

    // Resources. Client connections are closed: what is left are idle pooled connections to the
    // backend, and they go when the backend does.
    wait_until("client sockets closed (idle pooled ones may stay)", || {
        agent.stats().fds <= base.fds + POOL_IDLE
    })
    .await;
    let after = agent.stats();
    fake.stop().await;
    wait_until("every socket closed once the backend is gone", || {
        agent.stats().fds <= base.fds
    })
    .await;
    let settled = agent.stats();
    println!(
        "soak: agent peak RSS (VmHWM) {:.1} MB (idle {:.1} MB, VmRSS after {:.1} MB); fds idle {} / all open {} / after {} / backend gone {}; threads idle {} / all open {} / after {}",
        settled.hwm_kb as f64 * 1024.0 / MIB,
        base.hwm_kb as f64 * 1024.0 / MIB,
        settled.rss_kb as f64 * 1024.0 / MIB,
        base.fds,
        peak.fds,
        after.fds,
        settled.fds,
        base.threads,
        peak.threads,
        settled.threads,
    );
    assert!(
        settled.hwm_kb * 1024 < RSS_LIMIT,
        "agent peak RSS (VmHWM) {:.1} MB through {clients} streams, limit {:.0} MB",
        settled.hwm_kb as f64 * 1024.0 / MIB,
        RSS_LIMIT as f64 / MIB
    );
    assert!(
        peak.fds >= 2 * clients,
        "with all {clients} streams open the agent held {} fds, not a client and a backend socket each",
        peak.fds
    );
    assert!(
        peak.threads <= base.threads + THREAD_SLACK
            && settled.threads <= base.threads + THREAD_SLACK,
        "threads grew: idle {}, all open {}, after {}",
        base.threads,
        peak.threads,
        settled.threads
    );
    agent.assert_healthy();
}
