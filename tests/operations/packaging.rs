//! The service unit, `packaging/ollama-tap.service`: `systemd-analyze verify` finds nothing
//! wrong with it, it runs the agent unprivileged with the hardening docs/service.md quotes, systemd
//! rates its exposure below 2 (of 10), and its restart and stop settings match what the binary
//! does. (`--version` is checked in `cli.rs`.)

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::docs::{ticked_in_column, SERVICE};

const UNIT_FILE: &str = "ollama-tap.service";
const UNIT: &str = include_str!("../../packaging/ollama-tap.service");
/// The binary the unit starts, as installed.
const INSTALLED: &str = "/usr/bin/ollama-tap";

/// The unit's settings: section → key → every value it is given, in order (a key may be
/// repeated, as `SystemCallFilter` is). Comments and blank lines are skipped.
fn settings() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in UNIT.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line}"));
        out.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    out
}

/// The one value of `[section] key`; panics when it is missing or set more than once.
fn value(section: &str, key: &str) -> String {
    let all = settings();
    let values = all
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("[{section}] {key} is not set"));
    assert_eq!(values.len(), 1, "[{section}] {key} is set more than once");
    values[0].clone()
}

/// A copy of the unit in a fresh temp dir, its `ExecStart` pointing at the binary under test
/// (verify checks that the command exists and is executable).
struct UnitCopy {
    dir: PathBuf,
}

impl UnitCopy {
    fn new(tag: &str) -> UnitCopy {
        let dir =
            std::env::temp_dir().join(format!("ollama-tap-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let from = format!("ExecStart={INSTALLED} ");
        assert!(UNIT.contains(&from), "ExecStart does not start {INSTALLED}");
        let unit = UNIT.replace(&from, &format!("ExecStart={} ", common::binary()));
        std::fs::write(dir.join(UNIT_FILE), unit).unwrap();
        UnitCopy { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(UNIT_FILE)
    }
}

impl Drop for UnitCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `systemd-analyze ARGS... UNIT`: (exit status, stdout, stderr).
fn systemd_analyze(args: &[&str], unit: &UnitCopy) -> (i32, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect("systemd-analyze is installed (scripts/test.sh installs Debian's systemd package)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn systemd_analyze_verify_finds_nothing_wrong_with_the_unit() {
    let unit = UnitCopy::new("verify");
    let (code, out, err) = systemd_analyze(&["verify"], &unit);
    // In a container verify may also talk about the host (no systemd running, other units);
    // only what it says about this unit counts.
    let (about_unit, rest): (Vec<&str>, Vec<&str>) = out
        .lines()
        .chain(err.lines())
        .partition(|l| l.contains(UNIT_FILE));
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify on {UNIT_FILE}:\n{}\n(the rest of its output:\n{})",
        about_unit.join("\n"),
        rest.join("\n")
    );
    assert_eq!(code, 0, "systemd-analyze verify exited {code}:\n{out}{err}");
}

#[test]
fn the_unit_runs_the_agent_on_etc_ollama_tap_unprivileged_with_every_capability_dropped() {
    assert_eq!(
        value("Service", "ExecStart"),
        format!("{INSTALLED} --configs /etc/ollama-tap")
    );
    assert_eq!(value("Service", "DynamicUser"), "yes");
    assert!(
        !settings()["Service"].contains_key("User"),
        "User= beside DynamicUser=yes names a static user"
    );
    for (key, want) in [
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(value("Service", key), want, "[Service] {key}");
    }
    assert_eq!(value("Unit", "After"), "network-online.target");
    assert_eq!(value("Unit", "Wants"), "network-online.target");
    assert_eq!(value("Install", "WantedBy"), "multi-user.target");
}

/// Every `Key=value` the table of unit lines in docs/service.md quotes is a line of the unit.
#[test]
fn every_unit_line_the_docs_quote_is_in_the_unit() {
    let quoted = ticked_in_column(SERVICE, "unit line");
    assert!(
        quoted.len() >= 20,
        "docs/service.md's \"unit line\" table was not found or is short: {quoted:?}"
    );
    let lines: Vec<&str> = UNIT.lines().map(str::trim).collect();
    let missing: Vec<&String> = quoted
        .iter()
        .filter(|q| !lines.contains(&q.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "quoted in docs/service.md, not lines of {UNIT_FILE}: {missing:?}"
    );
}

/// A configuration error and an unknown flag exit with statuses the unit does not restart on
/// (so a broken config leaves the unit failed instead of looping); other failures restart.
#[test]
fn a_config_error_or_a_bad_flag_exits_with_a_status_the_unit_does_not_restart_on() {
    let no_restart: Vec<i32> = value("Service", "RestartPreventExitStatus")
        .split_whitespace()
        .map(|s| s.parse().expect("RestartPreventExitStatus lists numbers"))
        .collect();
    let missing = std::env::temp_dir().join(format!("ollama-tap-no-conf-{}", std::process::id()));
    let config_error = Command::new(common::binary())
        .arg("--configs")
        .arg(&missing)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let bad_flag = Command::new(common::binary())
        .arg("-configz") // not a flag, one dash or two
        .arg("/etc/ollama-tap")
        .output()
        .unwrap();
    for (what, out) in [("config error", config_error), ("bad flag", bad_flag)] {
        let code = out.status.code().expect("exited");
        assert!(
            code != 0 && no_restart.contains(&code),
            "{what}: exit {code}, the unit restarts on all but {no_restart:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        value("Service", "RestartSec")
            .parse::<humantime::Duration>()
            .is_ok(),
        "RestartSec is a duration"
    );
}

/// systemd waits long enough after SIGTERM for the agent's own shutdown (in-flight requests,
/// then the final push) before it kills.
#[test]
fn the_unit_waits_for_the_agents_drain_and_final_push_before_killing_it() {
    let stop: Duration = value("Service", "TimeoutStopSec")
        .parse::<humantime::Duration>()
        .expect("TimeoutStopSec is a duration")
        .into();
    let needed = ollama_tap::GRACE + ollama_tap::FLUSH;
    assert!(
        stop > needed,
        "TimeoutStopSec {stop:?} is not above the agent's {needed:?} drain and final push"
    );
    assert_eq!(value("Service", "KillSignal"), "SIGTERM");
}

/// `systemd-analyze security --offline=yes` (systemd ≥ 250) scores the unit's exposure from
/// 0 (locked down) to 10; the unit is at 1.1 "OK" with systemd 252, where the rest is the
/// network access a proxy needs.
#[test]
fn systemd_rates_the_units_exposure_below_2() {
    let unit = UnitCopy::new("security");
    let (code, out, err) = systemd_analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    assert_eq!(
        code, 0,
        "systemd-analyze security exited {code}:\n{out}{err}"
    );
    let marker = format!("Overall exposure level for {UNIT_FILE}: ");
    let overall = out
        .lines()
        .find_map(|l| {
            l.split_once(&marker)
                .map(|(_, rest)| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no overall exposure level:\n{out}{err}"));
    let score: f64 = overall
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a score: {overall}"));
    println!("systemd-analyze security: {overall}");
    let exposed: Vec<&str> = out.lines().filter(|l| l.starts_with('✗')).collect();
    assert!(
        score < 2.0,
        "exposure {overall}; what counts against it:\n{}",
        exposed.join("\n")
    );
}
