//! Client extraction: precedence, hashing, bounds.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

/// `printf %s sk-carol-secret | sha256sum | cut -c1-12`
const CAROL_KEY: &str = "key-1051ddd7b1a0";
/// `printf %s alice@example.com | sha256sum | cut -c1-12`
const ALICE_HASH: &str = "hash-ff8d9819fc0e";

fn naming(headers: &[&str], from_body: bool, from_api_key: bool, hash: bool) -> ClientNaming {
    ClientNaming::new(&Clients {
        headers: headers
            .iter()
            .map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap())
            .collect(),
        from_body,
        from_api_key,
        hash,
        max_clients: 50,
    })
    .expect("a source is configured")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// The label of a request with these headers and body `user`, as the proxy computes it.
fn label(n: &ClientNaming, h: &HeaderMap, user: Option<&str>) -> Option<String> {
    let found = n.header(h);
    let user = user.filter(|_| n.wants_user(found));
    n.label(found, user, h)
}

const ALL: &[&str] = &["X-OpenWebUI-User-Email", "X-User"];

#[test]
fn with_no_source_configured_there_is_no_naming() {
    assert!(ClientNaming::new(&Clients::default()).is_none());
    let hash_only = Clients {
        hash: true,
        max_clients: 3,
        ..Clients::default()
    };
    assert!(ClientNaming::new(&hash_only).is_none());
}

#[test]
fn the_first_configured_header_present_wins_over_later_headers_the_body_user_and_the_api_key() {
    let n = naming(ALL, true, true, false);
    let h = headers(&[
        ("x-user", "bob"),
        ("X-OpenWebUI-User-Email", "alice@example.com"),
        ("authorization", "Bearer sk-carol-secret"),
    ]);
    assert_eq!(
        label(&n, &h, Some("dave")).as_deref(),
        Some("alice@example.com")
    );
    let h = headers(&[
        ("x-user", "bob"),
        ("authorization", "Bearer sk-carol-secret"),
    ]);
    assert_eq!(label(&n, &h, Some("dave")).as_deref(), Some("bob"));
    // a blank header is not a value: the next source is asked
    let h = headers(&[("x-openwebui-user-email", "  "), ("x-user", "bob")]);
    assert_eq!(label(&n, &h, None).as_deref(), Some("bob"));
}

#[test]
fn a_header_that_names_the_client_means_the_body_user_is_not_waited_for() {
    let n = naming(ALL, true, false, false);
    let h = headers(&[("x-user", "bob")]);
    assert!(!n.wants_user(n.header(&h)));
    assert!(n.wants_user(n.header(&HeaderMap::new())));
    assert!(!naming(ALL, false, true, false).wants_user(None));
}

#[test]
fn the_body_user_wins_over_the_api_key_and_a_blank_one_falls_through() {
    let n = naming(&[], true, true, false);
    let h = headers(&[("authorization", "Bearer sk-carol-secret")]);
    assert_eq!(label(&n, &h, Some("dave")).as_deref(), Some("dave"));
    assert_eq!(label(&n, &h, Some(" ")).as_deref(), Some(CAROL_KEY));
    assert_eq!(label(&n, &h, None).as_deref(), Some(CAROL_KEY));
    // without client_from_body a user is never used
    let n = naming(&[], false, true, false);
    assert_eq!(n.label(None, Some("dave"), &h).as_deref(), Some(CAROL_KEY));
}

#[test]
fn an_api_key_is_named_by_a_short_hash_and_the_token_never_appears() {
    let n = naming(&[], false, true, false);
    for auth in [
        "Bearer sk-carol-secret",
        "bearer sk-carol-secret",
        "BEARER   sk-carol-secret  ",
    ] {
        let got = label(&n, &headers(&[("authorization", auth)]), None).unwrap();
        assert_eq!(got, CAROL_KEY, "{auth}");
        assert!(!got.contains("carol") && !got.contains("secret"));
    }
    // Anthropic's header, when there is no bearer token
    let h = headers(&[("x-api-key", "sk-carol-secret")]);
    assert_eq!(label(&n, &h, None).as_deref(), Some(CAROL_KEY));
    // not a bearer token: no key
    for auth in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer   ",
        "Bearersk-carol-secret",
    ] {
        assert_eq!(
            label(&n, &headers(&[("authorization", auth)]), None),
            None,
            "{auth}"
        );
    }
    assert_eq!(label(&n, &HeaderMap::new(), None), None);
    // without client_from_api_key a key is never used
    let n = naming(ALL, false, false, false);
    let h = headers(&[("authorization", "Bearer sk-carol-secret")]);
    assert_eq!(label(&n, &h, None), None);
}

#[test]
fn client_hash_hashes_header_and_body_values_alike_and_never_keeps_the_value() {
    let n = naming(ALL, true, true, true);
    let h = headers(&[("x-user", "alice@example.com")]);
    assert_eq!(label(&n, &h, None).as_deref(), Some(ALICE_HASH));
    // the same value from the body is the same client
    assert_eq!(
        label(&n, &HeaderMap::new(), Some("alice@example.com")).as_deref(),
        Some(ALICE_HASH)
    );
    // surrounding blanks are not part of the value
    let h = headers(&[("x-user", " alice@example.com ")]);
    assert_eq!(label(&n, &h, None).as_deref(), Some(ALICE_HASH));
    // a key's label is already a hash: it stays as it is
    let h = headers(&[("authorization", "Bearer sk-carol-secret")]);
    assert_eq!(label(&n, &h, None).as_deref(), Some(CAROL_KEY));
    // a 10 KB value hashes whole to a short label
    let long = "a".repeat(10_000);
    let got = n.label(None, Some(&long), &HeaderMap::new()).unwrap();
    assert_eq!(got.len(), HASH_PREFIX.len() + HASH_HEX);
    assert_ne!(
        got,
        n.label(None, Some(&long[1..]), &HeaderMap::new()).unwrap()
    );
}

#[test]
fn values_are_cut_to_128_bytes_on_a_char_boundary_and_control_characters_replaced() {
    assert_eq!(
        safe_label("a\"b\\c\nd\re\tf\u{0}g\u{85}h"),
        "a\"b\\c_d_e_f_g_h"
    );
    let long = "x".repeat(10_000);
    assert_eq!(safe_label(&long), "x".repeat(MAX_CLIENT_BYTES));
    // 127 bytes and a 2-byte é: the é does not fit, and is not split
    let edge = format!("{}é", "x".repeat(MAX_CLIENT_BYTES - 1));
    assert_eq!(safe_label(&edge), "x".repeat(MAX_CLIENT_BYTES - 1));
    let cjk = "用户".repeat(100); // 3 bytes each: 42 fit in 128
    let cut = safe_label(&cjk);
    assert_eq!((cut.len(), cut.chars().count()), (126, 42));
    // through the naming: a header of 10 KB with quotes and backslashes
    let n = naming(ALL, true, false, false);
    let value = format!("\"q\\{}", "y".repeat(10_000));
    let got = label(&n, &headers(&[("x-user", &value)]), None).unwrap();
    assert_eq!(got.len(), MAX_CLIENT_BYTES);
    assert!(got.starts_with("\"q\\y"));
    // a body user with a newline
    let got = label(&n, &HeaderMap::new(), Some("line\nbreak")).unwrap();
    assert_eq!(got, "line_break");
}

#[test]
fn a_header_that_is_not_utf8_is_read_lossily() {
    let n = naming(ALL, false, false, false);
    let mut h = HeaderMap::new();
    h.insert("x-user", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    assert_eq!(label(&n, &h, None).as_deref(), Some("caf\u{fffd}"));
}
