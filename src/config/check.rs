//! Value checks shared by the config loader: URLs, Go-style listen addresses, I/O reasons.

use std::net::{SocketAddr, ToSocketAddrs};

use axum::http::Uri;

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

/// Whether two listeners would fight over the same port.
pub fn addrs_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn io_reasons_drop_os_error() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&err), "No such file or directory");
    }
}
