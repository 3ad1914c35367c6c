//! Value checks shared by the config loader: URLs, Go-style listen addresses, unknown keys, error positions.

use std::net::{SocketAddr, ToSocketAddrs};

use axum::http::Uri;
use serde::de::DeserializeOwned;

/// Line and column (1-based, in characters) of a byte offset in a file's text.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Puts a possibly multi-line message on one line.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// An I/O error's text without Rust's " (os error N)" suffix.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Parses an absolute http(s) URL with a host; any path prefix is kept.
pub fn http_uri(value: &str) -> Result<Uri, String> {
    let not_url = |why: &str| format!("{value:?} is not an http(s) URL ({why})");
    let uri: Uri = value.trim().parse().map_err(|e| not_url(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => return Err(not_url(&format!("scheme {other:?}"))),
        None => return Err(not_url("no http:// or https:// scheme")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(uri),
        _ => Err(not_url("no host")),
    }
}

/// `value` with any `user:pass@` of its authority replaced by `***@`, for error messages.
pub fn redact_userinfo(value: &str) -> String {
    let Some(start) = value.find("://").map(|i| i + 3) else {
        return value.to_owned();
    };
    let rest = &value[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}***{}", &value[..start], &rest[at..]),
        None => value.to_owned(),
    }
}

/// Resolves a Go-style listen address: ":8000" means 0.0.0.0:8000; otherwise host:port
/// (names are resolved now, the first address wins).
pub fn listen_addr(value: &str) -> Result<SocketAddr, String> {
    let text = value.trim();
    let spec = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    let bad = |why: String| {
        format!("{value:?} is not a listen address (expected \":port\" or \"host:port\"): {why}")
    };
    let mut addrs = spec.to_socket_addrs().map_err(|e| bad(io_reason(&e)))?;
    addrs
        .next()
        .ok_or_else(|| bad("the name resolves to no address".to_owned()))
}

/// Rejects `[key]` (one table) where Categraf expects `[[key]]` (an array of tables).
pub fn array_of_tables(table: &toml::Table, key: &str) -> Result<(), String> {
    match table.get(key) {
        Some(toml::Value::Table(_)) => Err(format!(
            "is a single table; write [[{key}]] with double brackets"
        )),
        _ => Ok(()),
    }
}

/// Whether two listeners would fight over the same port.
pub fn addrs_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// Warnings for keys of `table` not in `known`, e.g.
/// `conf/x.toml: instances[0]: unknown key "olama_url" (ignored; did you mean "ollama_url"?)`.
pub fn unknown_keys(
    warnings: &mut Vec<String>,
    file: &str,
    section: &str,
    table: &toml::Table,
    known: &[&str],
) {
    for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
        let place = if section.is_empty() {
            String::new()
        } else {
            format!(" {section}:")
        };
        let hint = known
            .iter()
            .map(|k| (edit_distance(key, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!("; did you mean {k:?}?"))
            .unwrap_or_default();
        warnings.push(format!(
            "{file}:{place} unknown key {key:?} (ignored{hint})"
        ));
    }
}

/// Unknown-key warnings for `config.toml`: `[global]` and every `[[writers]]`.
pub fn main_warnings(warnings: &mut Vec<String>, file: &str, table: &toml::Table) {
    if let Some(global) = table.get("global").and_then(toml::Value::as_table) {
        unknown_keys(warnings, file, "global", global, super::keys::GLOBAL_KEYS);
    }
    if let Some(writers) = table.get("writers").and_then(toml::Value::as_array) {
        for (i, w) in writers.iter().enumerate() {
            if let Some(w) = w.as_table() {
                unknown_keys(
                    warnings,
                    file,
                    &format!("writers[{i}]"),
                    w,
                    super::keys::WRITER_KEYS,
                );
            }
        }
    }
}

/// Unknown-key warnings for an `input.ollama/*.toml`: top level and every `[[instances]]`.
pub fn input_warnings(warnings: &mut Vec<String>, file: &str, table: &toml::Table) {
    unknown_keys(warnings, file, "", table, super::keys::INPUT_KEYS);
    if let Some(instances) = table.get("instances").and_then(toml::Value::as_array) {
        for (i, ins) in instances.iter().enumerate() {
            if let Some(ins) = ins.as_table() {
                let section = format!("instances[{i}]");
                unknown_keys(warnings, file, &section, ins, super::keys::INSTANCE_KEYS);
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Names the field behind a type error in `value`, as `prefix.key` (or `prefix` alone).
///
/// Deserialising a `toml::Value` reports the key path in its Display ("...\nin `timeout`").
pub fn field_of<T: DeserializeOwned>(value: &toml::Value, prefix: &str) -> Option<String> {
    let err = value.clone().try_into::<T>().err()?;
    let text = err.to_string();
    let key = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("in `"))
        .and_then(|l| l.strip_suffix('`'));
    Some(match (prefix.is_empty(), key) {
        (_, None) => prefix.to_owned(),
        (true, Some(key)) => key.to_owned(),
        (false, Some(key)) => format!("{prefix}.{key}"),
    })
    .filter(|f| !f.is_empty())
}

/// [`field_of`] for the section `key` of `table`, if present.
pub fn field_in_table<T: DeserializeOwned>(table: &toml::Table, key: &str) -> Option<String> {
    field_of::<T>(table.get(key)?, key)
}

/// Like [`field_of`] for an array of tables: every bad entry, as `key[i].field`.
pub fn field_in_array<T: DeserializeOwned>(table: &toml::Table, key: &str) -> Vec<String> {
    match table.get(key) {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| field_of::<T>(item, &format!("{key}[{i}]")))
            .collect(),
        Some(_) => vec![key.to_owned()],
    }
}

/// Picks, among candidate fields, the one whose key is assigned on the error's line
/// (`line`), else the first; a file with several bad values yields several candidates.
pub fn pick_field(candidates: Vec<String>, line: &str) -> Option<String> {
    let assigned = |field: &String| {
        let key = field.rsplit('.').next().unwrap_or(field);
        let key = key.split('[').next().unwrap_or(key);
        line.match_indices(key).any(|(i, _)| {
            let before = line[..i].chars().next_back();
            let after = line[i + key.len()..].trim_start();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && (after.starts_with('=')
                    || after.starts_with("\"") && after[1..].trim_start().starts_with('='))
        })
    };
    candidates
        .iter()
        .find(|f| assigned(f))
        .or(candidates.first())
        .cloned()
}

/// The text of the line holding byte `offset`.
pub fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('x').unwrap_or(0)), (2, 6));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn urls() {
        let uri = http_uri("http://10.0.0.1:11434/prefix/").expect("valid");
        assert_eq!(uri.path(), "/prefix/");
        assert!(http_uri("https://ollama.example").is_ok());
        for bad in [
            "htp//x",
            "ftp://x",
            "http://",
            "",
            "localhost:11434",
            "http:// x",
        ] {
            let err = http_uri(bad).expect_err(bad);
            assert!(
                err.starts_with(&format!("{bad:?} is not an http(s) URL")),
                "{err}"
            );
        }
    }

    #[test]
    fn listen_addresses() {
        let ok = |s: &str| listen_addr(s).expect(s);
        assert_eq!(ok(":8000"), "0.0.0.0:8000".parse().expect("addr"));
        assert_eq!(ok("127.0.0.1:9"), "127.0.0.1:9".parse().expect("addr"));
        assert_eq!(ok("[::1]:8000"), "[::1]:8000".parse().expect("addr"));
        assert!(ok("localhost:8000").ip().is_loopback());
        for bad in ["8000", ":http", "1.2.3.4", ":99999", ""] {
            let err = listen_addr(bad).expect_err(bad);
            assert!(
                err.starts_with(&format!("{bad:?} is not a listen address")),
                "{err}"
            );
        }
    }

    #[test]
    fn conflicts() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(addrs_conflict(a("0.0.0.0:8000"), a("127.0.0.1:8000")));
        assert!(addrs_conflict(a("127.0.0.1:8000"), a("127.0.0.1:8000")));
        assert!(!addrs_conflict(a("127.0.0.1:8000"), a("127.0.0.2:8000")));
        assert!(!addrs_conflict(a("0.0.0.0:8000"), a("0.0.0.0:8001")));
        assert!(!addrs_conflict(a("0.0.0.0:0"), a("0.0.0.0:0")));
    }

    #[test]
    fn unknown_key_hints() {
        let table: toml::Table = toml::from_str("olama_url = 1\nzzz = 2\nport = 3").expect("toml");
        let mut w = Vec::new();
        unknown_keys(
            &mut w,
            "f.toml",
            "instances[0]",
            &table,
            &["ollama_url", "port"],
        );
        assert_eq!(
            w,
            [
                "f.toml: instances[0]: unknown key \"olama_url\" (ignored; did you mean \"ollama_url\"?)",
                "f.toml: instances[0]: unknown key \"zzz\" (ignored)",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn picks_the_field_on_the_error_line() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let both = c(&["global.hostname", "log.level"]);
        assert_eq!(
            pick_field(both.clone(), "level = 5").as_deref(),
            Some("log.level")
        );
        assert_eq!(
            pick_field(both.clone(), "hostname=1").as_deref(),
            Some("global.hostname")
        );
        assert_eq!(
            pick_field(both, "x = 1").as_deref(),
            Some("global.hostname")
        );
        let arr = c(&["instances[1]", "instances[0].n"]);
        assert_eq!(
            pick_field(arr, "labels = { n = 1 }").as_deref(),
            Some("instances[0].n")
        );
        assert_eq!(pick_field(Vec::new(), "a = 1"), None);
        assert_eq!(line_at("a\nbc\nd", 3), "bc");
        assert_eq!(line_at("a\nbc", 99), "bc");
    }

    #[test]
    fn io_reasons_drop_os_error() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&err), "No such file or directory");
    }
}
