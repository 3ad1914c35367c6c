//! The .deb, the .rpm and the tarball, as `scripts/package.sh --binary` makes them from the
//! debug binary `cargo test` built (the release build, with its glibc 2.17 check, is the
//! script's own job): they hold the same files, lintian finds no error in the .deb, and the
//! .deb installed with dpkg into a throwaway root (never into this machine) runs on its own
//! /etc/ollama-tap, keeps an edited conffile across a reinstall and a remove, and a purge
//! removes it.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::fake_ollama::FakeOllama;

const UNIT: &str = "ollama-tap.service";
const CONFFILES: [&str; 2] = [
    "/etc/ollama-tap/config.toml",
    "/etc/ollama-tap/input.ollama/ollama.toml",
];
/// The files both packages install (the .deb's unit is in /lib/systemd/system, as Debian's).
const FILES: [&str; 11] = [
    "/etc/ollama-tap/config.toml",
    "/etc/ollama-tap/input.ollama/ollama.toml",
    "/usr/bin/ollama-tap",
    "/usr/lib/systemd/system/ollama-tap.service",
    "/usr/share/doc/ollama-tap/README.md",
    "/usr/share/ollama-tap/alerts/ollama-tap.rules.yml",
    "/usr/share/ollama-tap/dashboards/grafana/ollama-tap.json",
    "/usr/share/ollama-tap/integrations/Ollama/alerts/ollama-tap.json",
    "/usr/share/ollama-tap/integrations/Ollama/dashboards/ollama-tap.json",
    "/usr/share/ollama-tap/integrations/Ollama/markdown/README.md",
    "/usr/share/ollama-tap/integrations/Ollama/metrics/ollama-tap.json",
];

/// Runs `cmd` to success and returns its stdout; panics with its output otherwise.
fn ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs the tools)"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{stdout}{stderr}",
        out.status
    );
    stdout
}

/// The three artifacts, made once for all the tests of this file.
struct Artifacts {
    deb: PathBuf,
    rpm: PathBuf,
    tarball: PathBuf,
}

fn artifacts() -> &'static Artifacts {
    static MADE: OnceLock<Artifacts> = OnceLock::new();
    MADE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ollama-tap-dist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ok(Command::new("scripts/package.sh")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--binary", common::binary(), "--out"])
            .arg(&dir));
        let v = env!("CARGO_PKG_VERSION");
        Artifacts {
            deb: dir.join(format!("ollama-tap_{v}-1_amd64.deb")),
            rpm: dir.join(format!("ollama-tap-{v}-1.x86_64.rpm")),
            tarball: dir.join(format!("ollama-tap-v{v}-linux-amd64.tar.gz")),
        }
    })
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn the_deb_and_the_rpm_install_the_same_files_and_the_same_conffiles() {
    let a = artifacts();
    let want: BTreeSet<String> = FILES.iter().map(|f| f.to_string()).collect();
    let rpm = lines(&ok(Command::new("rpm").arg("-qlp").arg(&a.rpm)));
    assert_eq!(rpm, want, "rpm -qlp");
    // dpkg-deb -c: "mode owner size date time path"; directories end in '/'
    let deb: BTreeSet<String> = ok(Command::new("dpkg-deb").arg("-c").arg(&a.deb))
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|p| !p.ends_with('/'))
        .map(|p| format!("/{}", p.trim_start_matches("./")))
        .map(|p| p.replace("/lib/systemd/", "/usr/lib/systemd/"))
        // Debian's own, made by cargo-deb (the changelog from packaging/debian/)
        .filter(|p| !p.ends_with("/copyright") && !p.ends_with("/changelog.Debian.gz"))
        .collect();
    assert_eq!(deb, want, "dpkg-deb -c");
    let deb_conf = lines(&ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&a.deb)
        .arg("conffiles")));
    let want_conf: BTreeSet<String> = CONFFILES.iter().map(|f| f.to_string()).collect();
    assert_eq!(deb_conf, want_conf, "the .deb's conffiles");
    let rpm_conf = lines(&ok(Command::new("rpm").arg("-qcp").arg(&a.rpm)));
    assert_eq!(rpm_conf, want_conf, "the .rpm's %config files");
}

#[test]
fn the_tarball_has_categrafs_layout_binary_beside_conf() {
    let a = artifacts();
    let top = format!("ollama-tap-v{}-linux-amd64/", env!("CARGO_PKG_VERSION"));
    let listed: BTreeSet<String> = ok(Command::new("tar").arg("-tzf").arg(&a.tarball))
        .lines()
        .filter(|p| !p.ends_with('/'))
        .map(|p| {
            p.strip_prefix(&top)
                .unwrap_or_else(|| panic!("{p} outside {top}"))
                .to_string()
        })
        .collect();
    let want: BTreeSet<String> = [
        "ollama-tap",
        "ollama-tap.service",
        "README.md",
        "conf/config.toml",
        "conf/input.ollama/ollama.toml",
        "alerts/ollama-tap.rules.yml",
        "dashboards/grafana/ollama-tap.json",
        "integrations/Ollama/alerts/ollama-tap.json",
        "integrations/Ollama/dashboards/ollama-tap.json",
        "integrations/Ollama/markdown/README.md",
        "integrations/Ollama/metrics/ollama-tap.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(listed, want);
}

#[test]
fn lintian_reports_no_error_about_the_deb() {
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info"])
        .arg(&artifacts().deb)
        .output()
        .expect("lintian is installed (scripts/test.sh installs Debian's lintian)");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("lintian:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
}

/// A dpkg database and install root in the temp dir, removed on drop: `dpkg --root` unpacks
/// into it and keeps its database there; the maintainer scripts run unchrooted with
/// `DPKG_ROOT` set, where they leave systemd alone and touch only files under the root.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = std::env::temp_dir().join(format!("ollama-tap-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        Root { dir }
    }

    /// `dpkg --root=ROOT ARGS...` to success. The package's `Depends` (libc6)
    /// are this machine's, not the empty root's.
    fn dpkg(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", self.dir.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--force-not-root", // a developer's run as a user: the root is theirs
                "--log=/dev/null",
            ])
            .args(args)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        ok(&mut cmd)
    }

    /// `path` (absolute, as installed) under the root.
    fn path(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The installed binary's `--test` on the installed /etc/ollama-tap (one 1 s interval):
/// its stdout, once it has exited 0.
fn installed_test_run(root: &Root) -> String {
    let child = Command::new(root.path("/usr/bin/ollama-tap"))
        .arg("--configs")
        .arg(root.path("/etc/ollama-tap"))
        .args(["--test", "--interval", "1"])
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(common::WAIT) else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("the --test run did not end within {:?}", common::WAIT);
    };
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "--test: {}\n{stderr}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// Points the installed instance at `backend` on a free port: the conffile edit.
fn edit_instance(root: &Root, backend: &str) -> String {
    let path = root.path(CONFFILES[1]);
    let shipped = std::fs::read_to_string(&path).unwrap();
    for line in [
        "ollama_url = \"http://localhost:11434\"",
        "proxy_listen_addr = \":8000\"",
    ] {
        assert!(
            shipped.contains(line),
            "the shipped ollama.toml has no {line}"
        );
    }
    let edited = shipped
        .replace("http://localhost:11434", backend)
        .replace("\":8000\"", "\"127.0.0.1:0\"");
    std::fs::write(&path, &edited).unwrap();
    edited
}

/// `systemd-analyze verify` on the unit as installed, in a copy whose `ExecStart` names the
/// installed binary under the root (verify checks that the command is executable; its
/// `--root` would want a whole systemd tree); only what it says about the unit counts, as in
/// tests/packaging.rs.
fn assert_installed_unit_verifies(root: &Root) {
    let unit = std::fs::read_to_string(root.path("/lib/systemd/system/ollama-tap.service"))
        .expect("the unit is installed");
    let exec = "ExecStart=/usr/bin/ollama-tap --configs /etc/ollama-tap\n";
    assert!(unit.contains(exec), "the installed unit has no {exec}");
    let copy = root.path("/verify").join(UNIT);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let installed = root.path("/usr/bin/ollama-tap");
    let at = format!(
        "ExecStart={} --configs /etc/ollama-tap\n",
        installed.display()
    );
    std::fs::write(&copy, unit.replace(exec, &at)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_unit: Vec<&str> = text.lines().filter(|l| l.contains(UNIT)).collect();
    assert!(about_unit.is_empty(), "verify:\n{text}");
    assert!(out.status.success(), "verify: {}\n{text}", out.status);
    std::fs::remove_dir_all(root.path("/verify")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deb_installs_runs_keeps_an_edited_conffile_until_purged() {
    let fake = FakeOllama::start().await;
    let backend = fake.url();
    tokio::task::spawn_blocking(move || install_run_reinstall_remove_purge(&backend))
        .await
        .unwrap();
}

fn install_run_reinstall_remove_purge(backend: &str) {
    let deb = artifacts().deb.to_str().unwrap().to_string();
    let root = Root::new();
    root.dpkg(&["-i", &deb]);
    for file in FILES
        .iter()
        .map(|f| f.replace("/usr/lib/systemd/", "/lib/systemd/"))
    {
        assert!(root.path(&file).is_file(), "{file} not installed");
    }
    assert_installed_unit_verifies(&root);

    let edited = edit_instance(&root, backend);
    let out = installed_test_run(&root);
    let up = out
        .lines()
        .find(|l| l.split(' ').nth(2) == Some("ollama_up"))
        .unwrap_or_else(|| panic!("no ollama_up sample:\n{out}"));
    assert!(
        up.contains(" service=ollama ") && up.ends_with(" 1"),
        "the installed config's instance reached the backend: {up}"
    );

    // The same package again: the edit is kept (and dpkg asks nothing: stdin is closed).
    root.dpkg(&["-i", &deb]);
    assert_eq!(
        std::fs::read_to_string(root.path(CONFFILES[1])).unwrap(),
        edited
    );

    // Removed: the binary goes, the configuration stays.
    root.dpkg(&["-r", "ollama-tap"]);
    assert!(!root.path("/usr/bin/ollama-tap").exists());
    assert!(!root.path("/lib/systemd/system/ollama-tap.service").exists());
    assert!(root.path(CONFFILES[0]).is_file());
    assert_eq!(
        std::fs::read_to_string(root.path(CONFFILES[1])).unwrap(),
        edited
    );

    // Purged: /etc/ollama-tap goes, and so does the disk queue systemd kept.
    let queue = root.path("/var/lib/private/ollama-tap");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(queue.join("00000001.q"), "queued").unwrap();
    root.dpkg(&["-P", "ollama-tap"]);
    assert!(
        !root.path("/etc/ollama-tap").exists(),
        "/etc/ollama-tap left"
    );
    assert!(!queue.exists(), "the disk queue left");
    let status = std::fs::read_to_string(root.path("/var/lib/dpkg/status")).unwrap();
    assert!(!status.contains("Package: ollama-tap"), "{status}");
}
