//! Turns the raw serde sections into validated `Config` parts, with errors naming the file and field.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::duration::DurationValue;
use super::raw::{self, RawGlobal, RawInstance, RawLog, RawWriter, RawWriterOpt};
use super::{check, Clients, ConfigError, Global, Instance, Limits, Log, Writer, WriterOpt};
use super::{
    DEFAULT_BATCH, DEFAULT_CHAN_SIZE, DEFAULT_INTERVAL, DEFAULT_QUEUE_MAX_MB, DEFAULT_TIMEOUT,
};

/// A validation error for `field` in `file`.
pub(super) fn invalid(
    file: &str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}

/// Checks a duration; absent or zero gives `None`.
pub(super) fn optional_duration(
    file: &str,
    field: &str,
    value: Option<&DurationValue>,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) => v
            .to_duration()
            .map(|d| Some(d).filter(|d| !d.is_zero()))
            .map_err(|e| invalid(file, field, e.to_string())),
    }
}

/// `[global]`: interval zero/absent → [`DEFAULT_INTERVAL`]; hostname and labels kept as written.
pub(super) fn global(file: &str, raw: RawGlobal) -> Result<Global, ConfigError> {
    let interval = optional_duration(file, "global.interval", raw.interval.as_ref())?;
    Ok(Global {
        hostname: raw.hostname,
        omit_hostname: raw.omit_hostname,
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        labels: raw.labels,
    })
}

/// One `[[writers]]` entry: URL required and http(s), headers in pairs, timeouts >= 0 ms.
pub(super) fn writer(file: &str, i: usize, raw: RawWriter) -> Result<Writer, ConfigError> {
    let field = |name: &str| format!("writers[{i}].{name}");
    let url = raw.url.trim();
    if url.is_empty() {
        return Err(invalid(
            file,
            field("url"),
            "missing (an http(s) remote-write URL is required)",
        ));
    }
    check::http_uri(url).map_err(|e| invalid(file, field("url"), e))?;
    if raw.headers.len() % 2 != 0 {
        return Err(invalid(
            file,
            field("headers"),
            format!(
                "odd number of entries ({}); expected pairs [\"Key\", \"Value\", ...]",
                raw.headers.len()
            ),
        ));
    }
    let headers = raw
        .headers
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    let millis = |name: &str, ms: i64| {
        u64::try_from(ms).map(Duration::from_millis).map_err(|_| {
            invalid(
                file,
                field(name),
                format!("{ms} is negative (milliseconds)"),
            )
        })
    };
    Ok(Writer {
        url: url.to_owned(),
        basic_auth_user: raw.basic_auth_user,
        basic_auth_pass: raw.basic_auth_pass,
        headers,
        timeout: millis("timeout", raw.timeout)?,
        dial_timeout: millis("dial_timeout", raw.dial_timeout)?,
        max_idle_conns_per_host: raw.max_idle_conns_per_host,
        use_tls: raw.use_tls,
        insecure_skip_verify: raw.insecure_skip_verify,
        tls_ca: raw.tls_ca,
    })
}

/// `[writer_opt]`: values <= 0 (or too large for this platform) take Categraf's defaults.
pub(super) fn writer_opt(file: &str, raw: RawWriterOpt) -> Result<WriterOpt, ConfigError> {
    let positive = |v: i64, default: usize| {
        usize::try_from(v)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let max_age = optional_duration(file, "writer_opt.queue_max_age", raw.queue_max_age.as_ref())?;
    let max_mb = u64::try_from(raw.queue_max_mb)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_QUEUE_MAX_MB);
    let queue_dir = raw.queue_dir.trim();
    Ok(WriterOpt {
        batch: positive(raw.batch, DEFAULT_BATCH),
        chan_size: positive(raw.chan_size, DEFAULT_CHAN_SIZE),
        queue_dir: (!queue_dir.is_empty()).then(|| queue_dir.into()),
        queue_max_bytes: max_mb.saturating_mul(1 << 20),
        queue_max_age: max_age.unwrap_or(Duration::ZERO),
    })
}

/// `[log]`: the level must parse as a tracing filter; an empty file_name means stdout.
pub(super) fn log(file: &str, raw: RawLog) -> Result<Log, ConfigError> {
    let level = raw.level.trim().to_owned();
    tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
        invalid(
            file,
            "log.level",
            format!("{level:?} is not a tracing filter: {e}"),
        )
    })?;
    let file_name = match raw.file_name.trim() {
        "" => raw::default_log_file_name(),
        name => name.to_owned(),
    };
    Ok(Log { file_name, level })
}

/// One `[[instances]]` entry (index and resolved interval are filled in by `load`).
pub(super) fn instance(path: &Path, i: usize, raw: RawInstance) -> Result<Instance, ConfigError> {
    let file = path.display().to_string();
    let field = |name: &str| format!("instances[{i}].{name}");
    let ollama_url = check::http_uri(&raw.ollama_url)
        .and_then(|uri| match uri.query() {
            Some(_) => Err(format!("{:?} has a query string", raw.ollama_url)),
            None => Ok(uri),
        })
        .and_then(
            |uri| match uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                // They would go to Ollama as part of the Host header, and show in logs and /health.
                true => Err(format!(
                    "{:?}: credentials (user:pass@) in ollama_url are not supported",
                    check::redact_userinfo(&raw.ollama_url)
                )),
                false => Ok(uri),
            },
        )
        .map_err(|e| invalid(&file, field("ollama_url"), e))?;
    let listen_text = match raw.proxy_listen_addr.trim() {
        "" => raw::default_proxy_listen_addr(),
        text => text.to_owned(),
    };
    let proxy_listen_addr = check::listen_addr(&listen_text)
        .map_err(|e| invalid(&file, field("proxy_listen_addr"), e))?;
    let metrics_listen_addr = match raw.metrics_listen_addr.trim() {
        "" => None,
        text => Some(
            check::listen_addr(text)
                .map_err(|e| invalid(&file, field("metrics_listen_addr"), e))?,
        ),
    };
    let timeout = optional_duration(&file, &field("timeout"), raw.timeout.as_ref())?;
    let interval = optional_duration(&file, &field("interval"), raw.interval.as_ref())?;
    let clients = Clients::validate(&file, i, &raw)?;
    let limits = Limits::validate(&file, i, &raw)?;
    Ok(Instance {
        index: 0,
        file: path.to_path_buf(),
        file_index: i,
        ollama_url,
        proxy_listen_addr,
        listen_text,
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        interval: interval.unwrap_or(Duration::ZERO),
        labels: raw.labels,
        max_models: raw.max_models,
        passive: raw.passive,
        include_usage: raw.include_usage,
        otel_semconv: raw.otel_semconv,
        metrics_listen_addr,
        metrics_bearer_token: raw.metrics_bearer_token,
        metrics_basic_auth_user: raw.metrics_basic_auth_user,
        metrics_basic_auth_pass: raw.metrics_basic_auth_pass,
        clients,
        limits,
    })
}

/// Rejects two listeners (proxy or metrics, any instances) on the same port.
pub(super) fn listeners(instances: &[Instance]) -> Result<(), ConfigError> {
    let mut seen: Vec<(SocketAddr, String)> = Vec::new();
    for ins in instances {
        let file = ins.file.display().to_string();
        let mut mine = vec![(ins.proxy_listen_addr, "proxy_listen_addr")];
        mine.extend(ins.metrics_listen_addr.map(|a| (a, "metrics_listen_addr")));
        for (addr, name) in mine {
            let field = format!("instances[{}].{name}", ins.file_index);
            if let Some((_, other)) = seen.iter().find(|(a, _)| check::addrs_conflict(*a, addr)) {
                return Err(invalid(
                    &file,
                    field,
                    format!("{addr} conflicts with {other}"),
                ));
            }
            seen.push((addr, format!("{file} {field}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(text: &str) -> Result<WriterOpt, ConfigError> {
        writer_opt("config.toml", toml::from_str(text).unwrap())
    }

    #[test]
    fn an_empty_writer_opt_keeps_the_memory_queue_with_categrafs_sizes() {
        assert_eq!(opt("").unwrap(), WriterOpt::default());
        let d = WriterOpt::default();
        assert_eq!((d.batch, d.chan_size, d.queue_dir), (1000, 1_000_000, None));
        assert_eq!(
            (d.queue_max_bytes, d.queue_max_age),
            (1 << 30, Duration::ZERO)
        );
    }

    #[test]
    fn the_disk_queue_keys_are_read_and_bad_sizes_take_the_default() {
        let o = opt("queue_dir = \" /var/lib/q \"\nqueue_max_mb = 8\nqueue_max_age = \"2h\"\n")
            .unwrap();
        assert_eq!(o.queue_dir.as_deref(), Some(Path::new("/var/lib/q")));
        assert_eq!(o.queue_max_bytes, 8 << 20);
        assert_eq!(o.queue_max_age, Duration::from_secs(7200));
        assert_eq!(opt("queue_dir = \"  \"\n").unwrap().queue_dir, None);
        assert_eq!(opt("queue_max_mb = -3\n").unwrap().queue_max_bytes, 1 << 30);
        assert_eq!(
            opt("queue_max_age = 60\n").unwrap().queue_max_age,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_queue_max_age_that_is_not_a_duration_names_the_field() {
        let e = opt("queue_max_age = \"soon\"\n").unwrap_err().to_string();
        assert!(
            e.contains("config.toml") && e.contains("writer_opt.queue_max_age"),
            "{e}"
        );
    }
}
