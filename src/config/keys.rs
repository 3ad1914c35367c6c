//! The keys each section of Categraf's config files may have: what the unknown-key warnings
//! (`check.rs`) compare against. A key the agent reads is in `raw.rs` too; a Categraf key it
//! accepts and ignores is only here.

/// Keys known in `[global]`.
pub const GLOBAL_KEYS: &[&str] = &[
    "print_configs",
    "hostname",
    "omit_hostname",
    "labels",
    "precision",
    "interval",
    "providers",
    "concurrency",
];

/// Keys known in a `[[writers]]` entry.
pub const WRITER_KEYS: &[&str] = &[
    "url",
    "basic_auth_user",
    "basic_auth_pass",
    "headers",
    "timeout",
    "dial_timeout",
    "max_idle_conns_per_host",
    "use_tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_key_pwd",
    "insecure_skip_verify",
    "tls_server_name",
    "tls_min_version",
    "tls_max_version",
    "tls_cipher_suites",
];

/// Keys known at the top level of an `input.ollama/*.toml` file.
pub const INPUT_KEYS: &[&str] = &[
    "interval",
    "labels",
    "metrics_drop",
    "metrics_pass",
    "metrics_name_prefix",
    "processor_enum",
    "relabel_configs",
    "instances",
];

/// Keys known in an `[[instances]]` entry.
pub const INSTANCE_KEYS: &[&str] = &[
    "ollama_url",
    "proxy_listen_addr",
    "timeout",
    "interval",
    "labels",
    "interval_times",
    "metrics_drop",
    "metrics_pass",
    "metrics_name_prefix",
    "processor_enum",
    "relabel_configs",
    "max_models",
    "passive",
    "include_usage",
    "otel_semconv",
    "metrics_listen_addr",
    "metrics_bearer_token",
    "metrics_basic_auth_user",
    "metrics_basic_auth_pass",
    "client_headers",
    "client_from_body",
    "client_from_api_key",
    "client_hash",
    "max_clients",
    "client_header_timeout",
    "keepalive_timeout",
    "max_connections",
];
