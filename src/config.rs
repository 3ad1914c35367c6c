//! TEMPORARY STUB (replaced by the config module).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub interval: Option<Duration>,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub global: Global,
    pub writers: Vec<Writer>,
    pub log: Log,
    pub instances: Vec<Instance>,
}
#[derive(Debug, Clone)]
pub struct Global {
    pub hostname: String,
    pub omit_hostname: bool,
    pub interval: Duration,
    pub labels: BTreeMap<String, String>,
}
#[derive(Debug, Clone)]
pub struct Writer {
    pub url: String,
}
#[derive(Debug, Clone)]
pub struct Log {
    pub file_name: String,
    pub level: String,
}
#[derive(Debug, Clone)]
pub struct Instance {
    pub index: usize,
    pub ollama_url: axum::http::Uri,
    pub proxy_listen_addr: SocketAddr,
    pub listen_text: String,
    pub timeout: Duration,
    pub interval: Duration,
    pub labels: BTreeMap<String, String>,
    pub max_models: usize,
    pub passive: bool,
}
pub fn load(dir: &Path, _o: &Overrides) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(dir.join("input.ollama/ollama.toml"))
        .map_err(|e| ConfigError(e.to_string()))?;
    let t: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError(e.message().to_string()))?;
    let mut instances = Vec::new();
    for (i, inst) in t
        .get("instances")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let url = inst
            .get("ollama_url")
            .and_then(|v| v.as_str())
            .unwrap_or("http://localhost:11434");
        let listen = inst
            .get("proxy_listen_addr")
            .and_then(|v| v.as_str())
            .unwrap_or("127.0.0.1:8000");
        let labels = inst
            .get("labels")
            .and_then(|v| v.as_table())
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        instances.push(Instance {
            index: i,
            ollama_url: url.parse().map_err(|_| ConfigError("ollama_url".into()))?,
            proxy_listen_addr: listen
                .parse()
                .map_err(|_| ConfigError("proxy_listen_addr".into()))?,
            listen_text: listen.into(),
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(1),
            labels,
            max_models: 100,
            passive: false,
        });
    }
    Ok(Loaded {
        config: Config {
            dir: dir.into(),
            global: Global {
                hostname: "test-host".into(),
                omit_hostname: false,
                interval: Duration::from_secs(1),
                labels: BTreeMap::new(),
            },
            writers: vec![],
            log: Log {
                file_name: "stdout".into(),
                level: "info".into(),
            },
            instances,
        },
        warnings: vec![],
    })
}
