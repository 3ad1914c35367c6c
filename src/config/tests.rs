//! Tests for `config::load`: defaults, merging, interval fallback; its errors and warnings are in `tests/errors.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

mod clients;
mod errors;
mod limits;

/// A throw-away config directory under the system temp dir, removed on drop.
struct TempConf {
    dir: PathBuf,
}

const MAIN: &str = r#"
[global]
print_configs = false
hostname = "host-$hostname"
omit_hostname = false
interval = 20
precision = "ms"
providers = ["local"]
concurrency = -1

[global.labels]
region = "shanghai"
env = "${HOME}"

[log]
file_name = "stdout"
max_size = 100
max_age = 1
max_backups = 1
local_time = true
compress = false

[writer_opt]
batch = 2000
chan_size = 0

[[writers]]
url = "http://127.0.0.1:17000/prometheus/v1/write"
basic_auth_user = "user"
basic_auth_pass = "pass"
headers = ["X-Tenant", "a", "Host", "n9e.local"]
timeout = 5000
dial_timeout = 2500
max_idle_conns_per_host = 100
use_tls = true
tls_ca = "/etc/ca.pem"
tls_cert = ""
tls_key = ""
tls_key_pwd = ""
insecure_skip_verify = true
tls_server_name = ""
tls_min_version = "1.2"
tls_max_version = "1.3"
tls_cipher_suites = []

[heartbeat]
enable = true
url = "http://127.0.0.1:17000/v1/n9e/heartbeat"
interval = 10

[http]
enable = false
address = ":9100"

[ibex]
enable = false
"#;

const INPUT: &str = r#"
interval = "1m30s"
metrics_drop = []
metrics_pass = []
metrics_name_prefix = ""
labels = { a = "b" }

[[instances]]
proxy_listen_addr = ":18000"
interval_times = 1

[[instances]]
ollama_url = "https://gpu-box:11434/ollama/"
proxy_listen_addr = "127.0.0.1:18001"
timeout = "2m"
interval = 5
metrics_listen_addr = "127.0.0.1:19001"
metrics_bearer_token = "secret"
max_models = 7
passive = true
include_usage = true
[instances.labels]
service = "ollama"
"#;

static NEXT: AtomicUsize = AtomicUsize::new(0);

// === impl TempConf ===

impl TempConf {
    fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ollama-tap-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(INPUT_DIR)).expect("create temp conf dir");
        TempConf { dir }
    }

    /// A directory holding the full example files.
    fn full() -> Self {
        let conf = TempConf::new();
        conf.write(MAIN_FILE, MAIN);
        conf.write("input.ollama/ollama.toml", INPUT);
        conf
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(path, text).expect("write conf file");
        self
    }

    fn load(&self) -> Result<Loaded, ConfigError> {
        load(&self.dir, &Overrides::default())
    }

    fn ok(&self) -> Loaded {
        self.load().unwrap_or_else(|e| panic!("should load: {e}"))
    }

    /// Loads expecting an error; checks it is one line and contains every `needle`.
    fn err(&self, needles: &[&str]) -> String {
        let err = match self.load() {
            Ok(_) => panic!("should fail with {needles:?}"),
            Err(e) => e.to_string(),
        };
        assert!(!err.contains('\n'), "not one line: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        err
    }
}

impl Drop for TempConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal valid directory with `input` as the only input file.
fn minimal(input: &str) -> TempConf {
    let conf = TempConf::new();
    conf.write(MAIN_FILE, "[global]\n")
        .write("input.ollama/ollama.toml", input);
    conf
}

#[test]
fn full_example_loads() {
    let conf = TempConf::full();
    let Loaded { config, warnings } = conf.ok();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.dir, conf.dir);

    assert_eq!(config.global.hostname, "host-$hostname");
    assert_eq!(config.global.interval, Duration::from_secs(20));
    assert_eq!(
        config.global.labels.get("env").map(String::as_str),
        Some("${HOME}")
    );
    assert_eq!(config.writer_opt.batch, 2000);
    assert_eq!(config.writer_opt.chan_size, 1_000_000);
    assert_eq!(config.log.file_name, "stdout");
    assert_eq!(config.log.level, "info");

    let w = &config.writers[0];
    assert_eq!(w.url, "http://127.0.0.1:17000/prometheus/v1/write");
    assert_eq!(config.first_writer_url(), Some(w.url.as_str()));
    assert_eq!(
        w.headers,
        [
            ("X-Tenant".into(), "a".into()),
            ("Host".into(), "n9e.local".into())
        ]
    );
    assert_eq!(w.timeout, Duration::from_millis(5000));
    assert_eq!(w.dial_timeout, Duration::from_millis(2500));
    assert!(w.use_tls && w.insecure_skip_verify);
    assert_eq!(w.tls_ca, "/etc/ca.pem");

    let [a, b] = &config.instances[..] else {
        panic!("two instances expected: {:?}", config.instances)
    };
    assert_eq!((a.index, b.index, a.file_index, b.file_index), (0, 1, 0, 1));
    assert_eq!(a.ollama_url.to_string(), "http://localhost:11434/");
    assert_eq!(a.upstream_prefix(), "");
    assert_eq!(a.proxy_listen_addr, "0.0.0.0:18000".parse().expect("addr"));
    assert_eq!(a.listen_text, ":18000");
    assert_eq!(a.timeout, Duration::from_secs(30));
    assert_eq!(a.interval, Duration::from_secs(90), "plugin interval");
    assert_eq!(
        (a.max_models, a.passive, a.include_usage),
        (100, false, false)
    );
    assert_eq!(a.metrics_listen_addr, None);
    assert!(a.labels.is_empty());

    assert_eq!(b.ollama_url.scheme_str(), Some("https"));
    assert_eq!(b.upstream_prefix(), "/ollama");
    assert_eq!(b.timeout, Duration::from_secs(120));
    assert_eq!(
        b.interval,
        Duration::from_secs(5),
        "instance interval, integer seconds"
    );
    assert_eq!(
        b.metrics_listen_addr,
        Some("127.0.0.1:19001".parse().expect("addr"))
    );
    assert_eq!(b.metrics_bearer_token, "secret");
    assert_eq!((b.max_models, b.passive, b.include_usage), (7, true, true));
    assert_eq!(b.labels.get("service").map(String::as_str), Some("ollama"));
}

#[test]
fn minimal_defaults_and_global_interval_fallback() {
    let conf = minimal("[[instances]]\n");
    let config = conf.ok().config;
    assert_eq!(config.global.interval, DEFAULT_INTERVAL);
    assert!(config.writers.is_empty());
    assert_eq!(
        (config.writer_opt.batch, config.writer_opt.chan_size),
        (1000, 1_000_000)
    );
    let ins = &config.instances[0];
    assert_eq!(ins.proxy_listen_addr, "0.0.0.0:8000".parse().expect("addr"));
    assert_eq!(ins.interval, DEFAULT_INTERVAL);

    conf.write(MAIN_FILE, "[global]\ninterval = \"45s\"\n");
    assert_eq!(
        conf.ok().config.instances[0].interval,
        Duration::from_secs(45)
    );
    conf.write(MAIN_FILE, "[global]\ninterval = 0\n");
    assert_eq!(conf.ok().config.instances[0].interval, DEFAULT_INTERVAL);
}

#[test]
fn files_merge_in_name_order() {
    let conf = minimal("[[instances]]\nproxy_listen_addr = \":18100\"\n");
    conf.write(
        "input.ollama/a.toml",
        "interval = 7\n[[instances]]\nproxy_listen_addr = \":18101\"\n",
    );
    conf.write("input.ollama/notes.txt", "not toml");
    conf.write("input.cpu/cpu.toml", "this is { not toml");
    conf.write("other.toml", "also { not toml");
    let config = conf.ok().config;
    let ports: Vec<u16> = config
        .instances
        .iter()
        .map(|i| i.proxy_listen_addr.port())
        .collect();
    assert_eq!(ports, [18101, 18100]);
    assert!(config.instances[1].file.ends_with("ollama.toml"));
    assert!(config
        .instances
        .iter()
        .all(|i| i.interval == Duration::from_secs(7)));
}

#[test]
fn interval_override_wins() {
    let conf = TempConf::full();
    let overrides = Overrides {
        interval: Some(Duration::from_secs(3)),
    };
    let config = load(&conf.dir, &overrides).expect("loads").config;
    assert_eq!(config.global.interval, Duration::from_secs(3));
    assert!(config
        .instances
        .iter()
        .all(|i| i.interval == Duration::from_secs(3)));
}
