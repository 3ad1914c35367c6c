//! The per-client attribution keys: off by default, loaded as written, bad header names named.

use super::*;

#[test]
fn client_attribution_is_off_by_default() {
    let loaded = minimal("[[instances]]\n").ok();
    let c = &loaded.config.instances[0].clients;
    assert_eq!(c, &Clients::default());
    assert!(!c.enabled());
    assert_eq!(c.max_clients, DEFAULT_MAX_CLIENTS);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn client_keys_load_as_written_with_header_names_parsed() {
    let loaded = minimal(
        "[[instances]]\nclient_headers = [\"X-OpenWebUI-User-Email\", \" X-User \"]\n\
         client_from_body = true\nclient_from_api_key = true\nclient_hash = true\n\
         max_clients = 2\n",
    )
    .ok();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config.instances[0].clients;
    let names: Vec<&str> = c.headers.iter().map(|h| h.as_str()).collect();
    assert_eq!(names, ["x-openwebui-user-email", "x-user"]);
    assert!(c.enabled() && c.from_body && c.from_api_key && c.hash);
    assert_eq!(c.max_clients, 2);
    for one in [
        "client_headers = [\"X-User\"]",
        "client_from_body = true",
        "client_from_api_key = true",
    ] {
        let loaded = minimal(&format!("[[instances]]\n{one}\n")).ok();
        assert!(loaded.config.instances[0].clients.enabled(), "{one}");
    }
}

#[test]
fn a_client_header_that_is_not_a_header_name_is_an_error_naming_file_and_entry() {
    minimal("[[instances]]\n[[instances]]\nproxy_listen_addr = \":18301\"\nclient_headers = [\"X-User\", \"X User\"]\n")
        .err(&["ollama.toml: instances[1].client_headers[1]: \"X User\" is not an HTTP header name"]);
    minimal("[[instances]]\nclient_headers = [\"\"]\n")
        .err(&["ollama.toml: instances[0].client_headers[0]: \"\" is not an HTTP header name"]);
    minimal("[[instances]]\nclient_headers = \"X-User\"\n")
        .err(&["ollama.toml:2:18: instances[0].client_headers: "]);
    minimal("[[instances]]\nmax_clients = -1\n")
        .err(&["ollama.toml:2:15: instances[0].max_clients: "]);
}

#[test]
fn client_hash_without_a_source_is_a_warning_naming_the_field() {
    let loaded = minimal("[[instances]]\nclient_hash = true\n").ok();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("ollama.toml: instances[0].client_hash: has no effect"),
        "{:?}",
        loaded.warnings
    );
}
