//! The README is part of the specification: its metric tables name exactly the families the
//! agent exports (with their types), and every key in its configuration tables is accepted by
//! the config loader with the default the table states.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::docs::{readme_families, tables, ticked, README};
use common::fake_ollama::FakeOllama;
use common::receiver::{Receiver, Script};
use common::{wait_metrics, ConfDir, InProcess};

/// `# TYPE` lines of an exposition: family → type.
fn exported_families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

async fn post(url: &str, body: &str) {
    let res = common::post(url, body).await;
    let status = res.status();
    res.bytes().await.unwrap();
    assert!(
        status.is_success() || status == 404,
        "{url} {body}: {status}"
    );
}

/// A traffic mix through every dialect, a backend check and a writer: then `/metrics` holds
/// every family the agent has.
async fn metrics_after_a_traffic_mix() -> String {
    let receiver = Receiver::start(Script::Always(204)).await;
    let fake = FakeOllama::start().await;
    // A disk queue, so that its families are there too.
    let queue =
        std::env::temp_dir().join(format!("ollama-tap-readme-queue-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&queue);
    let agent = InProcess::start(ConfDir::new(
        &format!(
            "[global]\nhostname = \"h\"\ninterval = 1\n[[writers]]\nurl = \"{}\"\n\
             [writer_opt]\nqueue_dir = \"{}\"\n",
            receiver.url(),
            queue.display()
        ),
        &format!(
            // every opt-in family on, so that the tables are checked against all of them
            "[[instances]]\nollama_url = \"{}\"\nproxy_listen_addr = \"127.0.0.1:0\"\n\
             otel_semconv = true\nclient_headers = [\"X-User\"]\n",
            fake.url()
        ),
    ))
    .await;
    let url = agent.url();
    let chat = r#""messages":[{"role":"user","content":"why is the sky blue [[tokens:4]]"}]"#;
    for (path, body) in [
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"why [[tokens:3]]"}"#.to_string(),
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"why","stream":false}"#.into(),
        ),
        ("/api/generate", r#"{"model":"llama3.2"}"#.into()),
        ("/api/chat", format!(r#"{{"model":"llama3.2",{chat}}}"#)),
        ("/api/embed", r#"{"model":"llama3.2","input":"hi"}"#.into()),
        (
            "/api/embeddings",
            r#"{"model":"llama3.2","prompt":"hi"}"#.into(),
        ),
        (
            "/api/generate",
            r#"{"model":"no-such-model","prompt":"hi"}"#.into(),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{"model":"llama3.2","stream":true,"stream_options":{{"include_usage":true}},{chat}}}"#
            ),
        ),
        (
            "/v1/completions",
            r#"{"model":"llama3.2","prompt":"hi"}"#.into(),
        ),
        (
            "/v1/embeddings",
            r#"{"model":"llama3.2","input":"hi"}"#.into(),
        ),
    ] {
        post(&format!("{url}{path}"), &body).await;
    }
    // The backend check (`ollama_up`, `/api/ps`) and a push (the writer's own families).
    let text = wait_metrics(&url, |m| {
        m.get("ollama_loaded_model_vram_bytes", &[]).is_some()
            && m.sum("ollama_tap_remote_write_samples_sent_total", &[]) > 0.0
            && m.sum("ollama_endpoint_requests_total", &[]) >= 10.0
    })
    .await
    .0;
    agent.stop().await;
    let _ = std::fs::remove_dir_all(&queue);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_metric_family_is_in_the_readme_and_every_readme_name_is_exported() {
    let text = metrics_after_a_traffic_mix().await;
    let exported = exported_families(&text);
    let documented = readme_families();
    let missing: Vec<_> = exported
        .keys()
        .filter(|f| !documented.contains_key(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "exported, not in the README's tables: {missing:?}"
    );
    let unexported: Vec<_> = documented
        .keys()
        .filter(|f| !exported.contains_key(*f))
        .collect();
    assert!(
        unexported.is_empty(),
        "in the README's tables, not exported:\n{unexported:?}\n{text}"
    );
    for (family, ty) in &documented {
        if let Some(ty) = ty {
            assert_eq!(&exported[family], ty, "{family}: the README says {ty}");
        }
    }
}

/// The TOML for a README default cell: `""`, booleans, numbers and lists as they are,
/// anything else as a string.
fn toml_value(cell: &str) -> Option<String> {
    let v = ticked(cell).first().copied().unwrap_or(cell).trim();
    if v.is_empty() {
        return None;
    }
    if v == "\"\"" || v == "true" || v == "false" || v.starts_with('[') || v.parse::<i64>().is_ok()
    {
        return Some(v.to_string());
    }
    Some(format!("{v:?}"))
}

/// Where a configuration table's keys go: (file, section line).
fn section_of(header: &str) -> Option<(&'static str, &'static str)> {
    Some(match header {
        "`[global]` key" => ("config.toml", "[global]"),
        "`[log]` key" => ("config.toml", "[log]"),
        "`[[writers]]` key" => ("config.toml", "[[writers]]\nurl = \"http://127.0.0.1:9/w\""),
        "`[writer_opt]` key" => ("config.toml", "[writer_opt]"),
        "instance key" => (
            "ollama.toml",
            "[[instances]]\nproxy_listen_addr = \"127.0.0.1:0\"",
        ),
        _ => return None,
    })
}

/// The loaded configuration (as its `Debug` text) and the loader's warnings for `config.toml`
/// and `ollama.toml` holding `section` with `line` in it.
fn load(file: &str, section: &str, line: &str) -> (String, Vec<String>) {
    let base_instance = "[[instances]]\nproxy_listen_addr = \"127.0.0.1:0\"";
    let mut config = String::new();
    let mut ollama = String::new();
    let target = if file == "config.toml" {
        ollama.push_str(base_instance);
        &mut config
    } else {
        &mut ollama
    };
    target.push_str(&format!("{section}\n{line}\n"));
    let conf = ConfDir::new(&config, &ollama);
    let loaded = ollama_tap::config::load(conf.path(), &Default::default())
        .unwrap_or_else(|e| panic!("{section} {line:?}: {e}"));
    let text = format!("{:?}", loaded.config).replace(&conf.path().display().to_string(), "<dir>");
    (text, loaded.warnings)
}

#[test]
fn every_key_in_the_readme_config_tables_is_accepted_with_the_stated_default() {
    let mut checked = BTreeSet::new();
    for (_, header, rows) in tables(README) {
        let Some((file, section)) = header.first().and_then(|h| section_of(h)) else {
            continue;
        };
        let default_col = header.iter().position(|h| h == "default");
        let (_, warnings) = load(file, section, "");
        assert!(warnings.is_empty(), "{section}: {warnings:?}");
        for row in rows {
            for key in ticked(&row[0]) {
                if key.starts_with('[') || key == "url" {
                    continue;
                }
                let value = default_col.and_then(|i| toml_value(&row[i]));
                let Some(value) = value else {
                    // No stated default: the key is at least accepted (no unknown-key warning).
                    continue;
                };
                // The section's own lines, less the one setting this key.
                let section: String = section
                    .lines()
                    .filter(|l| l.split('=').next().map(str::trim) != Some(key))
                    .collect::<Vec<_>>()
                    .join("\n");
                let (unset, _) = load(file, &section, "");
                let (set, warnings) = load(file, &section, &format!("{key} = {value}"));
                assert!(warnings.is_empty(), "{section} {key}: {warnings:?}");
                assert_eq!(
                    set, unset,
                    "{section} {key} = {value}: the README's default is not the loader's"
                );
                checked.insert(format!("{section} {key}"));
            }
        }
    }
    // The tables were found and read (a renamed header would silently check nothing).
    assert!(
        checked.len() >= 20,
        "only {} keys checked: {checked:?}",
        checked.len()
    );
}
