//! A real Prometheus (Debian's `prometheus` package, installed by scripts/test.sh) with the
//! remote-write receiver on, for the tests that push into it and ask it PromQL.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{eventually, ClosedPort, Running};

/// A Prometheus server with the remote-write receiver on; killed on drop.
pub struct Prometheus {
    pub port: u16,
    _proc: Running,
    dir: PathBuf,
}

impl Prometheus {
    /// A Prometheus on a port it picks itself (`127.0.0.1:0`), read from its "Listening on"
    /// log line.
    pub async fn start() -> Prometheus {
        Prometheus::spawn("127.0.0.1:0").await
    }

    /// A Prometheus on `port` (one that agents were already told to push to, refused until
    /// now): the port is let go only as Prometheus starts.
    pub async fn start_on(port: ClosedPort) -> Prometheus {
        let addr = port.addr().to_string();
        drop(port);
        Prometheus::spawn(&addr).await
    }

    async fn spawn(listen: &str) -> Prometheus {
        let dir = super::fresh_dir("prom");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect(
                "prometheus is installed (scripts/test.sh installs Debian's prometheus package)",
            );
        let mut proc = Running(child);
        // `msg="Listening on" address=127.0.0.1:PORT`, the port actually bound.
        let port = eventually("prometheus says where it listens", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = proc.0.try_wait().unwrap() {
                panic!("prometheus exited ({status}) before listening:\n{text}");
            }
            let port = text
                .lines()
                .filter(|l| l.contains("msg=\"Listening on\""))
                .find_map(|l| {
                    l.split_whitespace()
                        .find_map(|kv| kv.strip_prefix("address="))
                })
                .and_then(|a| a.rsplit_once(':')?.1.parse::<u16>().ok());
            std::future::ready(port.ok_or(text))
        })
        .await;
        let prom = Prometheus {
            port,
            _proc: proc,
            dir,
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        eventually("prometheus is ready", || async {
            match reqwest::get(&ready).await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(r.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        prom
    }

    /// The remote-write URL agents push to.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// The instant-query result vector for `query`.
    pub async fn query(&self, query: &str) -> Vec<serde_json::Value> {
        self.try_query(query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// The instant-query result vector for `query`, or Prometheus' error (a parse error, ...).
    pub async fn try_query(&self, query: &str) -> Result<Vec<serde_json::Value>, String> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let text = reqwest::Client::new()
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `query` returns a series whose value is `want`; returns that result.
    pub async fn wait_for_value(&self, query: &str, want: &str) -> Vec<serde_json::Value> {
        eventually(&format!("prometheus: {query} to be {want}"), || async {
            let r = self.query(query).await;
            if r.iter().any(|s| s["value"][1].as_str() == Some(want)) {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
