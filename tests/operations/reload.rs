//! SIGHUP reloads the real binary's configuration without a gap: streams in flight finish
//! whole and are counted once, counters carry over, new labels show on the next push, an
//! added instance serves, a removed one refuses new connections while its last stream ends,
//! a broken file keeps the configuration in force, and twenty reloads under traffic lose no
//! request and leave no descriptor or thread behind.

use crate::common;

use std::process::Command;

use common::fake_ollama::FakeOllama;
use common::receiver::{Receiver, Script};
use common::{Binary, ConfDir};

const REQUESTS: &str = "ollama_requests_total";
const MODEL: &str = "llama3.2:latest";
const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "reload refused";

/// `config.toml` pushing to `receiver` every second.
fn main_toml(receiver: &Receiver) -> String {
    format!(
        "[global]\ninterval = 1\nhostname = \"h\"\n[[writers]]\nurl = \"{}\"\n",
        receiver.url()
    )
}

/// An instance in front of `backend` on `listen`, labelled `name = ...`.
fn instance(backend: &str, listen: &str, name: &str) -> String {
    format!(
        "[[instances]]\nollama_url = \"{backend}\"\nproxy_listen_addr = \"{listen}\"\n\
         interval = 1\ntimeout = \"10s\"\n[instances.labels]\nname = \"{name}\"\n"
    )
}

/// Rewrites the input file, sends SIGHUP and waits for the agent to say the reload took (or
/// was refused); returns that line.
async fn reload(agent: &Binary, ollama_toml: &str) -> String {
    std::fs::write(
        agent.conf.path().join("input.ollama/ollama.toml"),
        ollama_toml,
    )
    .unwrap();
    let outcomes = |logs: &str| logs.matches(RELOADED).count() + logs.matches(REFUSED).count();
    let before = outcomes(&agent.logs());
    let sent = Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status();
    assert!(sent.unwrap().success());
    common::wait_until("the reload's outcome is logged", || {
        outcomes(&agent.logs()) > before
    })
    .await;
    let logs = agent.logs();
    let line = logs
        .lines()
        .rev()
        .find(|l| l.contains(RELOADED) || l.contains(REFUSED));
    line.unwrap().to_owned()
}

/// Waits until `receiver` accepted the request counter of the instance labelled `name` at
/// `value`.
async fn pushed(receiver: &Receiver, name: &str, value: f64, what: &str) {
    let has = |ts: &ollama_tap::push::proto::TimeSeries, k: &str, v: &str| {
        ts.labels.iter().any(|l| l.name == k && l.value == v)
    };
    common::wait_until(what, || {
        receiver.accepted_series().iter().any(|ts| {
            has(ts, "__name__", REQUESTS)
                && has(ts, "name", name)
                && ts.samples.iter().any(|s| s.value == value)
        })
    })
    .await;
}

async fn generate(url: &str, prompt: &str, stream: bool) -> reqwest::Response {
    let res = common::generate(url, "llama3.2", prompt, stream).await;
    assert_eq!(res.status(), 200);
    res
}

/// A stream held open by the fake (`[[gate]]`): its first line has arrived.
async fn held_stream(url: &str) -> (reqwest::Response, Vec<u8>) {
    let mut res = generate(url, "hold [[gate]] [[tokens:3]]", true).await;
    let first = res.chunk().await.unwrap().expect("a first line").to_vec();
    (res, first)
}

/// Reads a held stream to its end once the fake lets it go; checks it is whole: every line
/// JSON, the reply's three tokens in order, one done line at the end.
async fn finish(fake: &FakeOllama, (mut rest, mut body): (reqwest::Response, Vec<u8>)) {
    fake.open_gate();
    while let Some(chunk) = rest.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let reply: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(reply, "The sky is", "{text}");
    assert_eq!(
        lines.iter().filter(|l| l["done"] == true).count(),
        1,
        "{text}"
    );
    assert_eq!(lines.last().unwrap()["done"], true, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_across_a_reload_ends_whole_counted_once_and_new_labels_show_on_the_next_push() {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    let conf = ConfDir::new(
        &main_toml(&receiver),
        &instance(&fake.url(), "127.0.0.1:0", "a"),
    );
    let agent = Binary::start(conf).await;
    for _ in 0..2 {
        generate(&agent.url(), "hi", false)
            .await
            .text()
            .await
            .unwrap();
    }
    let held = held_stream(&agent.url()).await;
    let line = reload(&agent, &instance(&fake.url(), "127.0.0.1:0", "b")).await;
    assert!(line.contains(RELOADED) && line.contains("kept=1"), "{line}");
    finish(&fake, held).await;
    // Counted once, under the new label, the two before the reload carried over.
    let m = agent
        .wait_metrics(|m| m.get(REQUESTS, &[("name", "b"), ("model", MODEL)]) == Some(3.0))
        .await;
    assert_eq!(
        m.get(REQUESTS, &[("name", "a"), ("model", MODEL)]),
        None,
        "{}",
        m.0
    );
    pushed(&receiver, "b", 3.0, "the next push carries the new label").await;
    assert_eq!(
        agent
            .metrics()
            .await
            .get("ollama_tap_config_last_reload_successful", &[]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_instance_serves_and_a_removed_one_refuses_new_connections_while_its_stream_ends()
{
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    // y listens on an address of its own (a reload pairs instances by listen address), on a
    // port it picks itself; its log line says which (instances are logged in config order).
    let before =
        instance(&fake.url(), "127.0.0.1:0", "x") + &instance(&fake.url(), "127.0.0.2:0", "y");
    let agent = Binary::start(ConfDir::new(&main_toml(&receiver), &before)).await;
    let removed = agent.addrs[1].to_string();
    let held = held_stream(&format!("http://{removed}")).await;
    let after =
        instance(&fake.url(), "127.0.0.1:0", "x") + &instance(&fake.url(), "127.0.0.1:0", "z");
    let line = reload(&agent, &after).await;
    assert!(
        line.contains("kept=1") && line.contains("added=1") && line.contains("removed=1"),
        "{line}"
    );
    // The removed instance accepts no new connection; its stream goes on.
    let refused = || std::net::TcpStream::connect(&removed).is_err();
    common::wait_until("the removed instance stops accepting", refused).await;
    finish(&fake, held).await;
    // Its last samples are pushed once its stream has ended.
    pushed(
        &receiver,
        "y",
        1.0,
        "the removed instance's last samples arrive",
    )
    .await;
    // The added one serves, on the address its log line names.
    let logs = agent.logs();
    let added = logs.lines().rfind(|l| l.contains(" proxying ")).unwrap();
    let addr = added
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("listen="))
        .unwrap();
    generate(&format!("http://{addr}"), "hi", false)
        .await
        .text()
        .await
        .unwrap();
    let z = common::wait_metrics(&format!("http://{addr}"), |m| {
        m.get(REQUESTS, &[("name", "z"), ("model", MODEL)]) == Some(1.0)
    })
    .await;
    assert!(z.0.contains("name=\"z\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_configuration_in_force_and_says_which_field() {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    let good = instance(&fake.url(), "127.0.0.1:0", "a");
    let agent = Binary::start(ConfDir::new(&main_toml(&receiver), &good)).await;
    let broken = good.replace("timeout = \"10s\"", "timeout = \"soon\"");
    let line = reload(&agent, &broken).await;
    assert!(line.contains(REFUSED), "{line}");
    assert!(
        line.contains("ollama.toml") && line.contains("timeout"),
        "{line}"
    );
    generate(&agent.url(), "hi", false)
        .await
        .text()
        .await
        .unwrap();
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_tap_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        m.get(REQUESTS, &[("name", "a"), ("model", MODEL)]),
        Some(1.0)
    );
    let line = reload(&agent, &good.replace("\"a\"", "\"c\"")).await;
    assert!(line.contains(RELOADED), "{line}");
    let m = agent.metrics().await;
    assert_eq!(
        m.get("ollama_tap_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(
        m.get(REQUESTS, &[("name", "c"), ("model", MODEL)]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_traffic_lose_no_request_and_leave_fds_and_threads_as_they_were() {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    let conf = ConfDir::new(
        &main_toml(&receiver),
        &instance(&fake.url(), "127.0.0.1:0", "n0"),
    );
    let mut agent = Binary::start(conf).await;
    let url = agent.url();
    // The descriptors an agent keeps open at rest: its connection to the receiver, and an idle
    // connection to the backend in each pool (each proxy worker's, the checks'), as traffic
    // leaves them (twenty new client connections: both workers get some).
    for i in 0..20 {
        generate(&url, "warm", i % 2 == 0)
            .await
            .bytes()
            .await
            .unwrap();
    }
    receiver.wait_for_requests(2, common::WAIT).await;
    let idle = agent.stats();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let traffic = tokio::spawn(async move {
        let mut sent = 0u64;
        while !*stopped.borrow_and_update() {
            let stream = sent % 2 == 0;
            generate(&url, "[[tokens:2]]", stream)
                .await
                .bytes()
                .await
                .unwrap();
            sent += 1;
        }
        sent
    });
    for i in 1..=20 {
        let line = reload(
            &agent,
            &instance(&fake.url(), "127.0.0.1:0", &format!("n{i}")),
        )
        .await;
        assert!(line.contains(RELOADED), "reload {i}: {line}");
    }
    stop.send(true).unwrap();
    let sent = traffic.await.expect("every request answered 200, whole");
    assert!(sent > 0);
    let m = agent.metrics().await;
    assert_eq!(
        m.sum(REQUESTS, &[]),
        (sent + 20) as f64,
        "each request counted once"
    );
    assert_eq!(m.sum(REQUESTS, &[("name", "n20")]), (sent + 20) as f64);
    common::wait_until("descriptors and threads back where they were", || {
        let now = agent.stats();
        now.fds <= idle.fds && now.threads == idle.threads
    })
    .await;
    agent.assert_healthy();
}

/// logrotate without `copytruncate`: the log file is moved away, SIGHUP opens `file_name`
/// again, and the lines after it go to the new file, at the new level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_log_file_is_opened_again_at_the_new_level() {
    let fake = FakeOllama::start().await;
    let inst = instance(&fake.url(), "127.0.0.1:0", "a");
    let conf = ConfDir::new("", &inst);
    // The file the test harness reads is the one the agent logs to.
    let log = conf.path().join("agent.log");
    let main = |level: &str| {
        let file = log.display();
        format!("[global]\ninterval = 1\n[log]\nfile_name = \"{file}\"\nlevel = \"{level}\"\n")
    };
    std::fs::write(conf.path().join("config.toml"), main("info")).unwrap();
    let agent = Binary::start(conf).await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let hup = |level: &str| {
        std::fs::write(agent.conf.path().join("config.toml"), main(level)).unwrap();
        let sent = Command::new("kill")
            .args(["-HUP", &agent.pid().to_string()])
            .status();
        assert!(sent.unwrap().success());
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    hup("info");
    common::wait_until("the new file says the logs were reopened", || {
        read(&log).contains("logs reopened")
    })
    .await;
    let old = read(&rotated);
    assert!(old.contains("proxying") && old.contains(RELOADED), "{old}");
    assert!(!old.contains("logs reopened") && !read(&log).contains("proxying"));
    // The second reload is logged at info (the first one's went to the old file), then warn
    // applies: the third reload's info line is gone, its error is not.
    hup("warn");
    common::wait_until("the second reload", || read(&log).contains(RELOADED)).await;
    hup("not a level [");
    common::wait_until("the refused one", || read(&log).contains(REFUSED)).await;
    let new = read(&log);
    assert_eq!(new.matches("SIGHUP: reloading").count(), 1, "{new}");
}

/// The writers' side of a reload: a writer whose URL is unchanged keeps its queue (and sends
/// it with its new settings: here a header), a removed one is handed back with its queue to be
/// flushed, and what it cannot deliver then is what it reports left unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_writer_keeps_its_queue_and_a_removed_one_is_handed_back_with_its_own() {
    use ollama_tap::config::{Writer, WriterOpt};
    use ollama_tap::push::{RetryPolicy, Writers};
    use ollama_tap::{Family, Kind};
    let (kept, removed) = (
        Receiver::start(Script::Always(204)).await,
        Receiver::start(Script::Always(204)).await,
    );
    kept.stop().await;
    removed.stop().await;
    let fast = RetryPolicy {
        min: std::time::Duration::from_millis(5),
        max: std::time::Duration::from_millis(50),
    };
    let both = [Writer::new(&kept.url()), Writer::new(&removed.url())];
    let mut writers = Writers::start_with(&both, &WriterOpt::default(), fast).unwrap();
    let mut f = Family::new("ollama_tap_test", "Test.", Kind::Gauge);
    for i in 0..3 {
        f.push("", vec![("i".to_owned(), i.to_string())], 1.0);
    }
    writers.enqueue_families(&[f], 1_000);
    assert_eq!(writers.queued(), 6);
    let with_header = Writer {
        headers: vec![("X-Reloaded".to_owned(), "yes".to_owned())],
        ..Writer::new(&kept.url())
    };
    let gone = writers.reconfigure(&[with_header]).unwrap();
    assert_eq!((writers.queued(), gone.queued()), (3, 3));
    // An attempt in flight at the swap still goes out with the old client: let it and the
    // next one fail (two more retries) before the receiver comes back.
    let retries = |w: &Writers| {
        let f = w.families();
        let r = f
            .iter()
            .find(|f| f.name == "ollama_tap_remote_write_retries_total");
        r.map_or(0.0, |f| f.series.iter().map(|s| s.value).sum::<f64>())
    };
    let swapped = retries(&writers);
    common::wait_until("two tries after the swap", || {
        retries(&writers) >= swapped + 2.0
    })
    .await;
    kept.restart().await;
    let got = kept.wait_for_accepted_series(3, common::WAIT).await;
    assert_eq!(got.len(), 3);
    assert!(kept
        .received()
        .iter()
        .all(|r| r.headers.get("x-reloaded").is_some()));
    let left = gone.flush(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        left, 3,
        "the removed writer's receiver is down: its queue is left unsent"
    );
    assert!(removed.received().is_empty());
}
