//! The documents are part of the specification: the metric tables of docs/metrics.md name
//! exactly the families the agent exports (with their types), every key in the tables of
//! docs/configuration.md is accepted by the config loader with the default the table states, the
//! README stays the operator's short page (at most 300 lines, its key metrics documented), every
//! relative link between the documents resolves, CONTRIBUTING.md's source layout names every
//! file under src/, and no document names a path outside the repository or a tracker number.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::docs::{
    documented_families, tables, ticked, ticked_in_column, CONFIGURATION, CONTRIBUTING, README,
};
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
async fn every_exported_metric_family_is_in_the_docs_and_every_documented_name_is_exported() {
    let text = metrics_after_a_traffic_mix().await;
    let exported = exported_families(&text);
    let documented = documented_families();
    let missing: Vec<_> = exported
        .keys()
        .filter(|f| !documented.contains_key(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "exported, not in the tables of docs/metrics.md: {missing:?}"
    );
    let unexported: Vec<_> = documented
        .keys()
        .filter(|f| !exported.contains_key(*f))
        .collect();
    assert!(
        unexported.is_empty(),
        "in the tables of docs/metrics.md, not exported:\n{unexported:?}\n{text}"
    );
    for (family, ty) in &documented {
        if let Some(ty) = ty {
            assert_eq!(&exported[family], ty, "{family}: docs/metrics.md says {ty}");
        }
    }
}

/// The TOML for a default cell of docs/configuration.md: `""`, booleans, numbers and lists as they are,
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
fn every_key_in_the_docs_config_tables_is_accepted_with_the_stated_default() {
    let mut checked = BTreeSet::new();
    for (_, header, rows) in tables(CONFIGURATION) {
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
                    "{section} {key} = {value}: docs/configuration.md's default is not the loader's"
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

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documents the rules below hold: README.md, CONTRIBUTING.md, BENCH.md and docs/*.md, as
/// (path from the root, text).
fn documents() -> Vec<(String, String)> {
    let mut paths = vec![
        "README.md".to_string(),
        "CONTRIBUTING.md".to_string(),
        "BENCH.md".to_string(),
    ];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 8, "docs/ holds {docs:?}");
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = common::docs::read(&p);
            (p, text)
        })
        .collect()
}

/// The lines of a markdown text outside its fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown text's headings.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// The targets of the inline links `[text](target)` of a markdown text, outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        // Inline code is not a link: drop what is between backticks.
        let line: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let Some(end) = tail.find(')') else { break };
            out.push(tail[..end].trim().to_string());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn the_readme_is_at_most_300_lines() {
    let lines = README.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines: it is the operator's page; depth goes to docs/"
    );
}

#[test]
fn every_relative_link_between_the_documents_resolves() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for (path, text) in documents() {
        let dir = Path::new(&path).parent().unwrap_or(Path::new(""));
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved: PathBuf = if file.is_empty() {
                PathBuf::from(&path)
            } else {
                normalise(&dir.join(file))
            };
            let full = root().join(&resolved);
            if resolved.starts_with("..") || !full.exists() {
                broken.push(format!(
                    "{path}: ({target}): no file {}",
                    resolved.display()
                ));
                continue;
            }
            if let Some(fragment) = fragment {
                let heads = if resolved.extension().is_some_and(|e| e == "md") {
                    anchors(&std::fs::read_to_string(&full).unwrap())
                } else {
                    BTreeSet::new()
                };
                if !heads.contains(fragment) {
                    broken.push(format!("{path}: ({target}): no heading #{fragment}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 40, "only {checked} relative links found");
}

/// `a/../b` → `b`, `./a` → `a` (without touching the file system); a path that leaves the
/// repository keeps its leading `..`.
fn normalise(path: &Path) -> PathBuf {
    let mut out: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if out.last().is_some_and(|p| p != "..") {
                    out.pop();
                } else {
                    out.push("..".into());
                }
            }
            other => out.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    out.iter().collect()
}

/// Every `.rs` file under src/, by its path relative to src/.
fn source_files(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root().join("src")).unwrap();
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn the_contributing_layout_names_every_source_file_and_no_other() {
    let section = CONTRIBUTING
        .split_once("\n## Source layout\n")
        .expect("CONTRIBUTING.md has a Source layout section")
        .1;
    let block = section
        .split_once("```\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the section has a code block")
        .0;
    // One file a line, its path relative to src/ first.
    let named: BTreeSet<String> = block
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    let mut files = BTreeSet::new();
    source_files(&root().join("src"), &mut files);
    assert!(files.len() >= 20, "src/: {files:?}");
    let missing: Vec<_> = files.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "in src/, not in CONTRIBUTING.md's source layout (add a line saying its role): {missing:?}"
    );
    let stale: Vec<_> = named.difference(&files).collect();
    assert!(
        stale.is_empty(),
        "in CONTRIBUTING.md's source layout, not in src/: {stale:?}"
    );
}

/// `issue 9`, `issues 10 and 11`, `issue #9`: a tracker number, meaningless to a reader of the
/// repository.
fn tracker_numbers(text: &str) -> Vec<String> {
    // ASCII lower case keeps byte offsets: `at` indexes `text` too.
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    for (at, _) in lower.match_indices("issue") {
        let tail = lower[at + "issue".len()..].trim_start_matches('s');
        let tail = tail.trim_start_matches([' ', '#']);
        if tail.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(text[at..].chars().take(20).collect());
        }
    }
    out
}

#[test]
fn no_document_names_a_path_outside_the_repository_the_seed_or_an_issue_number() {
    let mut found = Vec::new();
    for (path, text) in documents() {
        let lower = text.to_lowercase();
        for word in ["../shared", "/work/", "seed"] {
            if lower.contains(word) {
                found.push(format!("{path}: {word:?}"));
            }
        }
        for hit in tracker_numbers(&text) {
            found.push(format!("{path}: {hit:?}"));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_readme_key_metrics_are_documented_families() {
    let documented = documented_families();
    let key = ticked_in_column(README, "metric");
    assert!(key.len() >= 5, "README's key metrics table: {key:?}");
    let unknown: Vec<_> = key
        .iter()
        .filter(|f| !documented.contains_key(*f))
        .collect();
    assert!(
        unknown.is_empty(),
        "in README.md's key metrics, not in docs/metrics.md: {unknown:?}"
    );
}
