//! A real Prometheus (Debian's `prometheus` package, installed by scripts/test.sh) with the
//! remote-write receiver on, for the tests that push into it and ask it PromQL.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{eventually, Running};

/// A Prometheus server with the remote-write receiver on a free port; killed on drop.
pub struct Prometheus {
    pub port: u16,
    _proc: Running,
    dir: PathBuf,
}

impl Prometheus {
    pub async fn start() -> Prometheus {
        Prometheus::start_on(super::free_port()).await
    }

    /// A Prometheus on `port` of 127.0.0.1 (one that agents were already told to push to).
    pub async fn start_on(port: u16) -> Prometheus {
        let dir =
            std::env::temp_dir().join(format!("ollama-tap-prom-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus is installed (scripts/test.sh installs Debian's prometheus package)",
            );
        let prom = Prometheus {
            port,
            _proc: Running(child),
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
