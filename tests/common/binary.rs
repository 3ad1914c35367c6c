//! The real `ollama-tap` binary as a test peer: started on a conf dir, its addresses read from
//! its own "proxying" log lines (so every listener can be `127.0.0.1:0`), killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::{eventually, proc_stats, wait_metrics, ConfDir, Metrics, ProcStats};

/// The real binary, running.
pub struct Binary {
    child: Child,
    pub conf: ConfDir,
    /// Each instance's proxy address, in config order.
    pub addrs: Vec<SocketAddr>,
    /// Each instance's `/metrics` address (the proxy address unless `metrics_listen_addr`).
    pub metrics_addrs: Vec<SocketAddr>,
}

impl Binary {
    /// Starts the binary on `conf` with its soft fd limit raised to the hard one, logs (stdout
    /// and stderr) to `agent.log` in the conf dir, and waits until every instance listens.
    pub async fn start(conf: ConfDir) -> Binary {
        Binary::start_with(conf, &[]).await
    }

    /// [`Self::start`] with extra flags.
    pub async fn start_with(conf: ConfDir, args: &[&str]) -> Binary {
        let log = std::fs::File::create(conf.path().join("agent.log")).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#)
            .arg(super::binary())
            .arg("--configs")
            .arg(conf.path())
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        let instances = instances_in(&conf);
        let mut bin = Binary {
            child,
            conf,
            addrs: Vec::new(),
            metrics_addrs: Vec::new(),
        };
        let lines = eventually("every instance of the agent listens", || {
            // Whole lines only: the log may be read while a line is being written.
            let logs = bin.logs();
            let lines: Vec<String> = logs
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && l.contains(" proxying "))
                .map(str::to_string)
                .collect();
            if let Some(status) = bin.child.try_wait().unwrap() {
                panic!("the agent exited ({status}) before listening:\n{logs}");
            }
            std::future::ready(if lines.len() >= instances {
                Ok(lines)
            } else {
                Err(logs)
            })
        })
        .await;
        for line in &lines {
            bin.addrs.push(field(line, "listen"));
            bin.metrics_addrs.push(field(line, "metrics"));
        }
        bin
    }

    /// One passive-or-not instance in front of `backend` (see [`ConfDir::single`]).
    pub async fn single(backend: &str, extra: &str) -> Binary {
        Binary::start(ConfDir::single(backend, extra)).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addrs[0])
    }

    /// The process id (`exec`: the shell's pid is the agent's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stats(&self) -> ProcStats {
        proc_stats(self.pid())
    }

    /// The soft `Max open files` of the agent.
    pub fn max_open_files(&self) -> u64 {
        soft_nofile(&format!("/proc/{}/limits", self.pid()))
    }

    /// Everything the agent logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.conf.path().join("agent.log")).unwrap_or_default()
    }

    /// `/metrics` of the first instance once nothing is in flight (see
    /// [`super::settled_metrics`]).
    pub async fn metrics(&self) -> Metrics {
        super::settled_metrics(&format!("http://{}", self.metrics_addrs[0])).await
    }

    /// Polls `/metrics` of the first instance until `pred` holds.
    pub async fn wait_metrics(&self, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        wait_metrics(&format!("http://{}", self.metrics_addrs[0]), pred).await
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Panics if the agent exited or logged a panic.
    pub fn assert_healthy(&mut self) {
        assert!(self.running(), "the agent exited:\n{}", self.logs());
        let logs = self.logs();
        assert!(!logs.contains("panicked"), "{logs}");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.child.wait().unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[[instances]]` entries in the conf dir's `input.ollama/*.toml`.
fn instances_in(conf: &ConfDir) -> usize {
    std::fs::read_dir(conf.path().join("input.ollama"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| t.lines().filter(|l| l.trim() == "[[instances]]").count())
                .sum()
        })
        .unwrap_or(0)
}

/// The address in `key=ADDR` of a log line.
fn field(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= address in {line:?}"))
}

/// The soft `Max open files` of a `/proc/*/limits` file.
pub fn soft_nofile(limits: &str) -> u64 {
    std::fs::read_to_string(limits)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no Max open files in {limits}"))
}
