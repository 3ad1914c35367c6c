//! The real binary: Categraf's flags, `--test`, and one clear line for every bad start.

use crate::common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::fake_ollama::FakeOllama;
use common::{command, ConfDir, Running};

/// Runs the binary to completion and returns (exit code, stdout, stderr).
fn run(conf: &ConfDir, args: &[&str]) -> (i32, String, String) {
    let out = command(conf, args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn instance(backend: &str, listen: &str) -> String {
    format!("[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"{listen}\"\n")
}

#[test]
fn version_and_help() {
    let conf = ConfDir::new("", "");
    let (code, out, _) = run(&conf, &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("ollama-tap {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, _) = run(&conf, &["--help"]);
    assert_eq!(code, 0);
    for flag in ["--configs", "--test", "--inputs", "--interval", "--debug"] {
        assert!(out.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn bad_starts_exit_non_zero_with_one_line_naming_the_culprit() {
    let cases: Vec<(ConfDir, &str)> = vec![
        (
            ConfDir::new("[global\n", &instance("http://x:1", "127.0.0.1:0")),
            "config.toml",
        ),
        (
            ConfDir::new("", "[[instances]]\nollama_url = \"not a url\"\n"),
            "ollama_url",
        ),
        (
            ConfDir::new("", "[[instances]]\ntimeout = \"soon\"\n"),
            "timeout",
        ),
        (ConfDir::new("", "# nothing\n"), "instances"),
        (
            ConfDir::new("", "[[instances]]\nproxy_listen_addr = \"nowhere\"\n"),
            "proxy_listen_addr",
        ),
    ];
    for (conf, needle) in &cases {
        let (code, out, err) = run(conf, &[]);
        assert_eq!(
            code, 64,
            "{needle}: a configuration error is EX_USAGE: {err}"
        );
        assert!(out.is_empty(), "{out}");
        let lines: Vec<_> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {err}");
        assert!(lines[0].contains(needle), "{needle} not named: {err}");
    }
}

#[test]
fn missing_conf_dir_names_the_file() {
    let conf = ConfDir::new("", "");
    let missing = conf.path.join("nope");
    let out = std::process::Command::new(common::binary())
        .arg("--configs")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("config.toml"), "{err}");
}

#[test]
fn a_port_in_use_is_named_and_nothing_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let conf = ConfDir::new("", &instance("http://127.0.0.1:1", &addr));
    let (code, _, err) = run(&conf, &[]);
    assert_eq!(code, 1, "a listen address in use exits 1: {err}");
    assert!(
        err.contains(&addr) && err.contains("proxy_listen_addr"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // the OS's reason, once
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

/// The agent's workers share its port (`SO_REUSEPORT`), but a second agent may not: started on
/// the port a running agent serves, it exits 1 naming the address, and the first one serves on.
#[tokio::test]
async fn a_second_agent_on_a_running_agents_port_is_refused() {
    let fake = FakeOllama::start().await;
    let mut first = common::Binary::single(&fake.url(), "passive = true").await;
    let addr = first.addr().to_string();
    let conf = ConfDir::new("", &instance(&fake.url(), &addr));
    let (code, _, err) = tokio::task::spawn_blocking(move || run(&conf, &[]))
        .await
        .unwrap();
    assert_eq!(code, 1, "a listen address in use exits 1: {err}");
    assert!(
        err.contains(&addr) && err.contains("proxy_listen_addr"),
        "{err}"
    );
    for _ in 0..8 {
        let res = reqwest::get(format!("{}/api/version", first.url()))
            .await
            .unwrap();
        assert_eq!(res.text().await.unwrap(), r#"{"version":"0.12.6"}"#);
    }
    first.assert_healthy();
}

#[test]
fn inputs_without_ollama_is_refused() {
    let conf = ConfDir::new("", &instance("http://127.0.0.1:1", "127.0.0.1:0"));
    let (code, _, err) = run(&conf, &["--inputs", "cpu:mem"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("cpu:mem") && err.contains("ollama"), "{err}");
}

#[test]
fn unknown_keys_are_warned_about_by_name() {
    let conf = ConfDir::new(
        "[global]\ninterval = 1\n[heartbeat]\nenable = true\n",
        "[[instances]]\nolama_url = \"http://127.0.0.1:1\"\nproxy_listen_addr = \"127.0.0.1:0\"\n",
    );
    let (code, _, err) = run(&conf, &["--test", "--inputs", "cpu:ollama"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("olama_url") && err.contains("ollama.toml"),
        "{err}"
    );
    assert!(!err.contains("heartbeat"), "{err}");
}

#[test]
fn log_file_name_appends_the_logs_to_that_file() {
    let backend = common::ClosedPort::new();
    let conf = ConfDir::new("", "");
    let log = conf.path.join("agent.log");
    std::fs::write(&log, "an earlier line\n").unwrap();
    std::fs::write(
        conf.path.join("config.toml"),
        format!(
            "[global]\ninterval = 1\n[log]\nfile_name = {:?}\nmax_size = 100\n",
            log.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.path.join("input.ollama/ollama.toml"),
        instance(&backend.url(), "127.0.0.1:0"),
    )
    .unwrap();
    let (code, _, err) = run(&conf, &["--test"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "logs went to stderr too: {err}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("an earlier line\n"),
        "not appended: {text}"
    );
    assert!(
        text.contains("proxying") && text.contains("--test"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colours in a file: {text:?}");
}

#[test]
fn a_log_file_that_cannot_be_opened_stops_the_start_naming_it() {
    let conf = ConfDir::new(
        "[log]\nfile_name = \"/nonexistent-dir/ollama-tap.log\"\n",
        &instance("http://127.0.0.1:1", "127.0.0.1:0"),
    );
    let (code, out, err) = run(&conf, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in [
        "config.toml",
        "log.file_name",
        "/nonexistent-dir/ollama-tap.log",
    ] {
        assert!(err.contains(needle), "{needle} not named: {err}");
    }
}

/// The conf dir of the `--test` runs: one instance on `fake`, a 2 s interval, labels.
fn test_mode_conf(fake: &FakeOllama) -> ConfDir {
    ConfDir::new(
        "[global]\nhostname = \"h1\"\n[global.labels]\nregion = \"eu\"\n",
        &format!(
            "{}interval = 2\n[instances.labels]\nservice = \"ollama\"\n",
            instance(&fake.url(), "127.0.0.1:0")
        ),
    )
}

/// Runs `cmd` (a `--test` run), sends one generate request through the proxy it binds once it
/// logs the address, waits for it to exit and returns its stdout; fails unless it exits 0.
async fn test_mode_stdout(mut cmd: std::process::Command) -> String {
    let mut child = Running(cmd.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    // The log lines, as they come: the "proxying" line names the bound address.
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let logs = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let listen = tokio::task::spawn_blocking(move || {
        line_rx
            .iter()
            .find_map(|l| {
                let addr = l
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("listen="))?;
                addr.parse::<std::net::SocketAddr>().ok()
            })
            .expect("a proxying line with listen=ADDR")
    })
    .await
    .unwrap();
    let res = reqwest::Client::new()
        .post(format!("http://{listen}/api/generate"))
        .body(r#"{"model":"llama3.2","prompt":"why is the sky blue","stream":false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();

    let out = tokio::task::spawn_blocking(move || {
        let status = child.0.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        (status, out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let logs = logs.join().unwrap();
    assert!(status.success(), "{logs:?}");
    assert!(!out.is_empty(), "no samples; logs: {logs:?}");
    out
}

/// Whether the `--test` output has a `metric` sample with `label` (`k=v`) and `value`.
fn has(out: &str, metric: &str, label: &str, value: &str) -> bool {
    out.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f[2] == metric && f.contains(&label) && f.last() == Some(&value)
    })
}

/// The samples of the one request `test_mode_stdout` sends, and the backend check's.
fn assert_the_requests_samples(out: &str) {
    for (metric, value) in [
        ("ollama_requests_total", "1"),
        ("ollama_tokens_generated_total", "5"),
        ("ollama_prompt_tokens_total", "5"),
    ] {
        assert!(
            has(out, metric, "model=llama3.2:latest", value),
            "{metric} {value}: {out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.split(' ').nth(2) == Some("ollama_up") && l.ends_with(" 1")),
        "{out}"
    );
}

/// `--test` proxies for one interval, prints Categraf lines to stdout (and only those), exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mode_prints_categraf_lines_after_one_interval() {
    let fake = FakeOllama::start().await;
    let conf = test_mode_conf(&fake);
    let out = test_mode_stdout(command(&conf, &["--test", "--inputs", "ollama"])).await;
    for line in out.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() >= 4, "{line}");
        fields[0].parse::<i64>().expect("unix seconds");
        assert_eq!(fields[1].len(), 8, "HH:MM:SS in {line}");
        assert!(fields[2].starts_with("ollama_"), "{line}");
        fields.last().unwrap().parse::<f64>().expect("value");
        let labels = &fields[3..fields.len() - 1];
        let mut sorted = labels.to_vec();
        sorted.sort();
        assert_eq!(labels, &sorted[..], "labels sorted in {line}");
        for want in ["agent_hostname=h1", "region=eu", "service=ollama"] {
            assert!(labels.contains(&want), "{want} missing in {line}");
        }
    }
    assert_the_requests_samples(&out);
}

/// The binary alone with `args` (no `--configs` added), as a script written for Categraf runs it.
fn bare(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(common::binary());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("CATEGRAF_CONFIGS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Go's flag package takes `-configs DIR` and `-configs=DIR` as well as `--configs DIR`, and
/// so does the agent: a Categraf script's `-configs DIR -test -inputs ollama` is a `--test` run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_dash_configs_and_test_run_like_the_two_dash_flags() {
    let fake = FakeOllama::start().await;
    let conf = test_mode_conf(&fake);
    let dir = conf.path().to_str().unwrap().to_string();
    let assign = format!("-configs={dir}");
    for args in [
        vec!["-configs", &dir, "-test", "-inputs", "ollama"],
        vec![&assign, "-test", "-debug"],
    ] {
        let out = test_mode_stdout(bare(&args)).await;
        assert_the_requests_samples(&out);
    }
}

/// `-h` and `-V` stay clap's short flags, `-version` is `--version`, and a single-dash name that
/// is none of Categraf's flags is still refused with exit 2.
#[test]
fn short_flags_work_as_before_and_an_unknown_single_dash_flag_exits_2() {
    let output = |args: &[&str]| {
        let out = bare(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), text, err)
    };
    let version = format!("ollama-tap {}", env!("CARGO_PKG_VERSION"));
    for flag in ["-V", "--version", "-version"] {
        let (code, out, _) = output(&[flag]);
        assert_eq!((code, out.trim()), (Some(0), version.as_str()), "{flag}");
    }
    let (code, short_help, _) = output(&["-h"]);
    assert_eq!(code, Some(0));
    assert!(short_help.contains("--configs"), "{short_help}");
    for flag in ["-foo", "-foo=1", "-testing", "-c"] {
        let (code, _, err) = output(&[flag, "conf"]);
        assert_eq!(code, Some(2), "{flag}: {err}");
        assert!(err.contains("unexpected argument"), "{flag}: {err}");
    }
}
