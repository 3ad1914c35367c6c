//! Load and soak through the real binary: many concurrent streaming `/api/generate` requests,
//! each held open for a while by the fake's `[[delay:MS]]`. Every client gets its stream
//! byte-exact, the counters are exact afterwards, and the agent's peak RSS, file descriptors and
//! threads stay bounded.
//!
//! Size: `OLLAMA_TAP_SOAK_CLIENTS` concurrent clients (default 1000), each stream held about
//! `OLLAMA_TAP_SOAK_SECS` seconds (default 5, the CI size). The full-size soak (README):
//!
//! ```sh
//! OLLAMA_TAP_SOAK_SECS=60 cargo test --release --test soak -- --nocapture
//! ```

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_ollama::{self, FakeOllama};
use common::{binary, free_port, wait_listening, ConfDir, Metrics, Running};

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

/// The real binary, started through `sh` so that its soft fd limit is raised to the hard one.
struct Agent {
    run: Running,
    port: u16,
    conf: ConfDir,
}

impl Agent {
    async fn start(backend: &str) -> Agent {
        let port = free_port();
        let conf = ConfDir::new(
            "[global]\nhostname = \"soak-host\"\ninterval = 60\n",
            &format!(
                "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"127.0.0.1:{port}\"\n"
            ),
        );
        let log = File::create(conf.path().join("agent.log")).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#)
            .arg(binary())
            .arg("--configs")
            .arg(conf.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("agent starts");
        let agent = Agent {
            run: Running(child),
            port,
            conf,
        };
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
        agent
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        // `exec`: the shell's pid is the agent's.
        self.run.0.id()
    }

    fn sample(&self) -> Sample {
        sample(self.pid())
    }

    fn max_open_files(&self) -> Option<u64> {
        soft_nofile(&format!("/proc/{}/limits", self.pid()))
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.conf.path().join("agent.log")).unwrap_or_default()
    }

    async fn metrics(&self, client: &reqwest::Client) -> Metrics {
        Metrics(
            client
                .get(format!("{}/metrics", self.url()))
                .send()
                .await
                .expect("GET /metrics")
                .text()
                .await
                .unwrap(),
        )
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    hwm: u64,
    rss: u64,
    threads: u64,
    fds: usize,
}

/// The soft `Max open files` of a `/proc/*/limits` file.
fn soft_nofile(limits: &str) -> Option<u64> {
    std::fs::read_to_string(limits)
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
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
    /// When the answer's head arrived: the agent had the request in flight.
    head_at: Instant,
    /// When the last byte arrived.
    end_at: Instant,
}

/// One streamed `/api/generate`, read chunk by chunk and checked.
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
    let head_at = Instant::now();
    started.fetch_add(1, Ordering::SeqCst);
    if res.status() != 200 {
        return Err(format!("status {}", res.status()));
    }
    let ct = res.headers().get("content-type").cloned();
    if ct.as_ref().map(|v| v.as_bytes()) != Some(b"application/x-ndjson") {
        return Err(format!("content-type {ct:?}"));
    }
    let mut all = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("body: {e}"))? {
        all.extend_from_slice(&chunk);
    }
    check_stream(&all, &prompt)?;
    Ok(Done {
        took: t0.elapsed(),
        bytes: all.len(),
        head_at,
        end_at: Instant::now(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_held_through_the_agent_stay_exact_and_bounded() {
    let mut clients = env_or("OLLAMA_TAP_SOAK_CLIENTS", 1000);
    let secs = env_or("OLLAMA_TAP_SOAK_SECS", 5).max(1) as u64;
    // This process holds a client socket and the fake's socket per stream.
    let own_limit = soft_nofile("/proc/self/limits").unwrap_or(1024) as usize;
    if own_limit < 2 * clients + 200 {
        let fit = own_limit.saturating_sub(200) / 2;
        println!(
            "soak: the test's own soft fd limit is {own_limit}: {fit} clients instead of {clients} (raise `ulimit -n` for the full size)"
        );
        clients = fit;
    }
    assert!(
        clients > 0,
        "no room for a single client (fd limit {own_limit})"
    );
    // `LINE_MS` before each of the tokens + 1 lines: about `secs` seconds per stream.
    let tokens = ((secs * 1000 / LINE_MS) as usize).saturating_sub(1).max(1);

    let fake = FakeOllama::start().await;
    let agent = Agent::start(&fake.url()).await;
    let agent_limit = agent.max_open_files().unwrap_or(0);
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m0 = agent.metrics(&admin).await;
    let base = agent.sample();
    println!(
        "soak: {clients} clients x {tokens} tokens, one line every {LINE_MS} ms (~{secs} s per stream); agent idle: VmRSS {:.1} MB, {} fds, {} threads, fd limit {agent_limit}",
        base.rss as f64 / MIB,
        base.fds,
        base.threads
    );

    // One connection per stream, closed when its answer ends.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    // Watch the agent while the streams run.
    let monitor = {
        let pid = agent.pid();
        let done = done.clone();
        let metrics_url = format!("{}/metrics", agent.url());
        let client = client.clone();
        tokio::spawn(async move {
            let mut peak = Sample::default();
            let mut in_flight_max = 0.0f64;
            while !done.load(Ordering::SeqCst) {
                let s = sample(pid);
                peak.rss = peak.rss.max(s.rss);
                peak.fds = peak.fds.max(s.fds);
                peak.threads = peak.threads.max(s.threads);
                if let Ok(res) = client.get(&metrics_url).send().await {
                    if let Ok(text) = res.text().await {
                        let m = Metrics(text);
                        in_flight_max = in_flight_max
                            .max(m.value("ollama_requests_in_flight", &[("model", LABEL)]));
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (peak, in_flight_max)
        })
    };

    let t0 = Instant::now();
    let url = format!("{}/api/generate", agent.url());
    let prompts: Vec<String> = (0..clients)
        .map(|i| format!("soak client {i} [[tokens:{tokens}]] [[delay:{LINE_MS}]]"))
        .collect();
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let fut = one_stream(client.clone(), url.clone(), p.clone(), started.clone());
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(3 * secs + 60),
                fut,
            ))
        })
        .collect();
    let mut results = Vec::with_capacity(clients);
    for t in tasks {
        results.push(match t.await.expect("client task") {
            Ok(r) => r,
            Err(_) => Err("no end within the time limit".to_string()),
        });
    }
    let wall = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    let (peak, in_flight_max) = monitor.await.unwrap();
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
    // Every stream was open at once from the last answer head to the first end.
    let last_head = ok.iter().map(|d| d.head_at).max().unwrap_or(t0);
    let first_end = ok.iter().map(|d| d.end_at).min().unwrap_or(t0);
    let together = first_end.saturating_duration_since(last_head);
    println!(
        "soak: {} of {clients} streams byte-exact in {:.1} s wall (each {:.1}..{:.1} s), {:.1} MB streamed; all {clients} open together for {:.1} s, at most {in_flight_max} in flight on /metrics",
        ok.len(),
        wall.as_secs_f64(),
        min.as_secs_f64(),
        max.as_secs_f64(),
        bytes as f64 / MIB,
        together.as_secs_f64(),
    );
    assert!(
        failures.is_empty(),
        "{} of {clients} streams failed, first ones: {:#?}\nagent log:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        agent.logs()
    );
    assert!(
        !together.is_zero(),
        "the streams were never all open at once: the first ended {:.1} s before the last began (raise OLLAMA_TAP_SOAK_SECS on a slow machine)",
        last_head.saturating_duration_since(first_end).as_secs_f64()
    );
    if together >= Duration::from_secs(1) {
        // The monitor reads /metrics every 250 ms: it saw that window.
        assert_eq!(
            in_flight_max, clients as f64,
            "ollama_requests_in_flight while all {clients} streams were open"
        );
    }

    // Counters, exact.
    let l = [("model", LABEL)];
    let mut m = agent.metrics(&admin).await;
    for _ in 0..100 {
        if m.value("ollama_requests_total", &l) - m0.value("ollama_requests_total", &l)
            >= clients as f64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = agent.metrics(&admin).await;
    }
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
    assert_eq!(m.value("ollama_requests_in_flight", &l), 0.0);
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
    let mut after = agent.sample();
    for _ in 0..50 {
        if after.fds <= base.fds + POOL_IDLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = agent.sample();
    }
    fake.stop().await;
    let mut settled = agent.sample();
    for _ in 0..100 {
        if settled.fds <= base.fds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        settled = agent.sample();
    }
    println!(
        "soak: agent peak RSS (VmHWM) {:.1} MB (idle {:.1} MB, VmRSS after {:.1} MB); fds idle {} / peak {} / after {} / backend gone {}; threads idle {} / peak {} / after {}",
        settled.hwm as f64 / MIB,
        base.hwm as f64 / MIB,
        settled.rss as f64 / MIB,
        base.fds,
        peak.fds,
        after.fds,
        settled.fds,
        base.threads,
        peak.threads,
        settled.threads,
    );
    assert!(
        settled.hwm < RSS_LIMIT,
        "agent peak RSS (VmHWM) {:.1} MB through {clients} streams, limit {:.0} MB",
        settled.hwm as f64 / MIB,
        RSS_LIMIT as f64 / MIB
    );
    assert!(
        peak.fds >= clients,
        "the agent never held the {clients} client sockets at once (peak {} fds)",
        peak.fds
    );
    assert!(
        after.fds <= base.fds + POOL_IDLE,
        "fds after the soak: {} (idle {}, + at most {POOL_IDLE} pooled)",
        after.fds,
        base.fds
    );
    assert!(
        settled.fds <= base.fds,
        "fd leak: {} fds once the backend is gone, {} before the soak",
        settled.fds,
        base.fds
    );
    assert!(
        peak.threads <= base.threads + THREAD_SLACK
            && settled.threads <= base.threads + THREAD_SLACK,
        "threads grew: idle {}, peak {}, after {}",
        base.threads,
        peak.threads,
        settled.threads
    );
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}

/// Peak and current RSS, threads and open fds of process `pid`, from `/proc`.
fn sample(pid: u32) -> Sample {
    let p = common::proc_stats(pid);
    Sample {
        hwm: p.hwm_kb * 1024,
        rss: p.rss_kb * 1024,
        threads: p.threads,
        fds: p.fds,
    }
}
