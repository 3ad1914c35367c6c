//! The connection bounds: nginx's defaults, durations read like `timeout`, errors naming
//! file and field.

use super::*;

#[test]
fn connection_limits_default_to_nginx_and_no_cap() {
    let loaded = minimal("[[instances]]\n").ok();
    let l = &loaded.config.instances[0].limits;
    assert_eq!(l, &Limits::default());
    assert_eq!(l.client_header_timeout, Duration::from_secs(60));
    assert_eq!(l.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(l.max_connections, 0);
    // zero means the default, as for `timeout`
    let loaded =
        minimal("[[instances]]\nclient_header_timeout = 0\nkeepalive_timeout = \"0s\"\n").ok();
    assert_eq!(loaded.config.instances[0].limits, Limits::default());
}

#[test]
fn connection_limits_load_as_written() {
    let loaded = minimal(
        "[[instances]]\nclient_header_timeout = \"1500ms\"\nkeepalive_timeout = 5\n\
         max_connections = 300\n",
    )
    .ok();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let l = &loaded.config.instances[0].limits;
    assert_eq!(l.client_header_timeout, Duration::from_millis(1500));
    assert_eq!(l.keepalive_timeout, Duration::from_secs(5));
    assert_eq!(l.max_connections, 300);
}

#[test]
fn bad_connection_limits_name_file_and_field() {
    minimal("[[instances]]\nclient_header_timeout = \"soon\"\n")
        .err(&["ollama.toml: instances[0].client_header_timeout: \"soon\" is not a duration"]);
    minimal(
        "[[instances]]\n[[instances]]\nproxy_listen_addr = \":18302\"\nkeepalive_timeout = -1\n",
    )
    .err(&["ollama.toml: instances[1].keepalive_timeout: -1 is negative"]);
    minimal("[[instances]]\nmax_connections = -1\n")
        .err(&["ollama.toml:2:19: instances[0].max_connections: "]);
    minimal("[[instances]]\nkeepalive_timeout = true\n")
        .err(&["ollama.toml:2:21: instances[0].keepalive_timeout: invalid type: boolean"]);
}
