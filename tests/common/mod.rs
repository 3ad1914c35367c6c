//! Test harness: a fake Ollama, raw-TCP peers, temporary conf dirs, the agent in process or
//! as the real binary ([`Binary`]), one wait for an event ([`eventually`]), ports nobody
//! listens on ([`ClosedPort`]) and small helpers to send requests and read `/metrics`.

// Every test binary (tests/<group>/main.rs, tests/soak.rs) compiles this module and uses a
// part of it, so each would warn about the rest. No item is unused by all of them (checked by
// building without this line: every warning names an item some other binary uses).
#![allow(dead_code)]

pub mod binary;
pub mod docs;
pub mod fake_ollama;
pub mod prometheus;
pub mod promtool;
pub mod python;
pub mod raw;
pub mod receiver;

#[allow(unused_imports)]
pub use binary::Binary;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ollama_tap::Agent;
use ollama_tap::InstanceState;
use tokio::sync::oneshot;

/// The bound on every wait for an event: generous, because it only ever fails a broken case
/// (a test waits for the event, not for the clock).
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits for the event `what`: runs `probe` until it answers `Ok`, and returns that value.
/// `Err` carries what the probe saw instead; if the event has not come within [`WAIT`], the
/// test fails naming `what` and the last thing seen. Tries come 10 ms apart at first, then
/// further apart (up to 100 ms): the one polling loop of the tests, never a timing claim.
pub async fn eventually<T, E: std::fmt::Display, Fut>(
    what: &str,
    mut probe: impl FnMut() -> Fut,
) -> T
where
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut pause = Duration::from_millis(10);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {WAIT:?}; last seen:\n{seen}"
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// [`eventually`] for a predicate over what this process already holds (counters, logs).
pub async fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    eventually(what, || {
        std::future::ready(if pred() { Ok(()) } else { Err("false") })
    })
    .await
}

/// Raises this process's soft limit of open files to its hard limit and returns the new
/// soft limit (tests holding thousands of sockets need it; children inherit it).
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// A new empty directory `ollama-tap-<what>-<pid>-<n>` in the system temp dir, unique in
/// this process (the caller removes it).
pub fn fresh_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ollama-tap-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A conf dir in the system temp dir, removed on drop.
pub struct ConfDir {
    pub path: PathBuf,
}

impl ConfDir {
    /// Writes `config.toml` and `input.ollama/ollama.toml`.
    pub fn new(config_toml: &str, ollama_toml: &str) -> ConfDir {
        let path = fresh_dir("test");
        std::fs::create_dir_all(path.join("input.ollama")).unwrap();
        std::fs::write(path.join("config.toml"), config_toml).unwrap();
        std::fs::write(path.join("input.ollama/ollama.toml"), ollama_toml).unwrap();
        ConfDir { path }
    }

    /// A conf dir with no writers, global hostname `test-host`, and one instance on an
    /// ephemeral port in front of `backend`, plus `extra` instance lines.
    /// `extra` may set `timeout` or `proxy_listen_addr` itself.
    pub fn single(backend: &str, extra: &str) -> ConfDir {
        let sets = |key: &str| {
            extra
                .lines()
                .any(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
        };
        let mut instance = format!("[[instances]]\nollama_url = \"{backend}\"\n");
        for (key, default) in [("proxy_listen_addr", "127.0.0.1:0"), ("timeout", "5s")] {
            if !sets(key) {
                instance.push_str(&format!("{key} = \"{default}\"\n"));
            }
        }
        instance.push_str(extra);
        instance.push('\n');
        ConfDir::new(
            "[global]\nhostname = \"test-host\"\ninterval = 1\n",
            &instance,
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The agent running in this process on ephemeral ports.
pub struct InProcess {
    pub addrs: Vec<SocketAddr>,
    /// Each instance's own `/metrics` listener, when configured.
    pub metrics_addrs: Vec<Option<SocketAddr>>,
    pub states: Vec<Arc<InstanceState>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _conf: ConfDir,
}

impl InProcess {
    /// Loads `conf` as the binary would, binds, and serves until dropped or [`Self::stop`].
    pub async fn start(conf: ConfDir) -> InProcess {
        let loaded =
            ollama_tap::config::load(conf.path(), &Default::default()).expect("config loads");
        let agent = Agent::bind(&loaded.config, true)
            .await
            .expect("agent binds");
        let addrs = agent.local_addrs();
        let metrics_addrs = agent.metrics_addrs();
        let states = agent.instances.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.serve(async {
            let _ = rx.await;
        }));
        InProcess {
            addrs,
            metrics_addrs,
            states,
            stop: Some(tx),
            task: Some(task),
            _conf: conf,
        }
    }

    /// One instance in front of `backend`.
    pub async fn single(backend: &str) -> InProcess {
        InProcess::start(ConfDir::single(backend, "")).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addrs[0])
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// `/metrics` of the first instance once nothing is in flight (see [`settled_metrics`]).
    pub async fn metrics(&self) -> Metrics {
        settled_metrics(&self.url()).await
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A fake Ollama and a passive agent in this process in front of it (no backend checks, so
/// the fake sees only what clients send).
pub async fn agent_and_fake() -> (InProcess, fake_ollama::FakeOllama) {
    let fake = fake_ollama::FakeOllama::start().await;
    let agent = InProcess::start(ConfDir::single(&fake.url(), "passive = true")).await;
    (agent, fake)
}

/// The text of a `/metrics` answer, with a lookup by name and labels.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name` whose labels include every pair of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (n, rest) = match series.find('{') {
                    Some(i) => (&series[..i], &series[i..]),
                    None => (series, ""),
                };
                if n != name {
                    return None;
                }
                let all = labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                all.then(|| value.parse().ok()).flatten()
            })
    }

    /// Sum of every series `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (n, rest) = series.split_at(series.find('{').unwrap_or(series.len()));
                let all = labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                (n == name && all)
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// Like [`Self::get`], 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

/// `GET {url}/metrics`.
pub async fn metrics_at(url: &str) -> Metrics {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap();
    Metrics(text)
}

/// `{url}/metrics` once no request is in flight: a request the client has finished with but
/// the agent has not (a hang-up it is still noticing, a cut it is still reading) is recorded
/// first. The in-flight gauge drops in the same step as the counters, after them, so the
/// scrape after one that shows nothing in flight is whole.
pub async fn settled_metrics(url: &str) -> Metrics {
    wait_metrics(url, |m| m.sum("ollama_requests_in_flight", &[]) == 0.0).await;
    metrics_at(url).await
}

/// Waits until `{url}/metrics` satisfies `pred`; returns that text.
pub async fn wait_metrics(url: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
    let pred = &pred;
    eventually(
        &format!("{url}/metrics to hold the condition"),
        move || async move {
            let m = metrics_at(url).await;
            if pred(&m) {
                Ok(m)
            } else {
                Err(m.0)
            }
        },
    )
    .await
}

/// `POST {url}` of `body` (JSON text, usually); the answer, its body unread.
pub async fn post(url: &str, body: impl ToString) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: no answer: {e}"))
}

/// `POST {base}/api/generate` of `prompt` to `model`, streamed or not; the answer, its body
/// unread.
pub async fn generate(base: &str, model: &str, prompt: &str, stream: bool) -> reqwest::Response {
    let body = serde_json::json!({"model": model, "prompt": prompt, "stream": stream});
    post(&format!("{base}/api/generate"), body).await
}

/// What `/proc` says about a process (the real binary, in memory and leak tests).
#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    pub fds: usize,
    pub threads: u64,
    pub rss_kb: u64,
    /// Peak RSS (`VmHWM`).
    pub hwm_kb: u64,
}

/// Open file descriptors, threads, RSS and peak RSS of process `pid`.
pub fn proc_stats(pid: u32) -> ProcStats {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is running");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    ProcStats {
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
        threads: field("Threads"),
        rss_kb: field("VmRSS"),
        hwm_kb: field("VmHWM"),
    }
}

/// Path of the real binary built by cargo for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ollama-tap")
}

/// The real binary with `--configs conf`, stdout and stderr piped.
pub fn command(conf: &ConfDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("--configs")
        .arg(conf.path())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running binary, killed on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port of 127.0.0.1 that nobody listens on, for as long as this lives: its socket is
/// bound but not listening, so a connection to it is refused, and no other socket (nor an
/// outgoing connection's ephemeral port) can take the number meanwhile. [`Self::listen`]
/// starts listening on it: a backend that was down comes up on that very address.
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = socket.local_addr().unwrap();
        ClosedPort { socket, addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Listens on the port (within a tokio runtime).
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(1024).unwrap()
    }
}
