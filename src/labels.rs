//! Categraf's label rules (instance labels, global labels, `agent_hostname`) and hostname / `$ip` / `${ENV}` expansion.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use axum::http::Uri;

use crate::snapshot::{Family, Labels};

/// The label Categraf adds with the agent's hostname (Nightingale turns it into `ident`).
pub(crate) const AGENT_HOSTNAME: &str = "agent_hostname";

/// Applies instance labels, global labels and `agent_hostname` to a series' labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Labeler {
    /// Instance labels in key order; `None` deletes the key (the value was "-").
    instance: Vec<(String, Option<String>)>,
    /// Labels added only where the series lacks the key, in this order: the global labels in
    /// key order (without "-" values), then `agent_hostname` (unless `omit_hostname`).
    defaults: Vec<(String, String)>,
}

// === impl Labeler ===

impl Labeler {
    /// Instance labels, `[global.labels]`, and the resolved agent_hostname (None when omit_hostname).
    /// Values must already be expanded (see [`expand_all`]).
    pub(crate) fn new(
        instance_labels: &BTreeMap<String, String>,
        global_labels: &BTreeMap<String, String>,
        agent_hostname: Option<String>,
    ) -> Self {
        let global = global_labels
            .iter()
            .filter(|(_, v)| *v != "-")
            .map(|(k, v)| (k.clone(), v.clone()));
        let hostname = agent_hostname.map(|h| (AGENT_HOSTNAME.to_owned(), h));
        Labeler {
            instance: instance_labels
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone()).filter(|v| v != "-")))
                .collect(),
            defaults: global.chain(hostname).collect(),
        }
    }

    /// Applies, in Categraf's order, to a series' plugin labels:
    /// 1. instance labels overwrite labels the plugin set; an instance value "-" deletes the label;
    /// 2. global labels are added only where the key is absent;
    /// 3. `agent_hostname` is added when absent (unless None): a global `agent_hostname`
    ///    label, or one the series carries, wins.
    ///
    /// Then the labels are sorted by name.
    pub(crate) fn apply(&self, labels: &mut Labels) {
        for (key, value) in &self.instance {
            match value {
                None => labels.retain(|(k, _)| k != key),
                Some(value) => match labels.iter_mut().find(|(k, _)| k == key) {
                    Some(slot) => slot.1.clone_from(value),
                    None => labels.push((key.clone(), value.clone())),
                },
            }
        }
        for (key, value) in &self.defaults {
            if !labels.iter().any(|(k, _)| k == key) {
                labels.push((key.clone(), value.clone()));
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    }

    /// [`Labeler::apply`] to every series of every family.
    pub(crate) fn apply_to_families(&self, families: &mut [Family]) {
        for series in families.iter_mut().flat_map(|f| f.series.iter_mut()) {
            self.apply(&mut series.labels);
        }
    }
}

/// The OS hostname (lossy UTF-8).
pub(crate) fn os_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Categraf `GetHostname`: "" gives the OS hostname; otherwise `$hostname` becomes the OS
/// hostname, `$ip` the host IP (see [`host_ip`]), and `${NAME}` / `$NAME` environment references
/// are expanded like Go's `os.Expand` (unset → empty).
pub(crate) fn resolve_hostname(configured: &str, first_writer_url: Option<&str>) -> String {
    let os = os_hostname();
    if configured.is_empty() {
        return os;
    }
    expand_with(configured, &os, first_writer_url)
}

/// Categraf's `Expand` for every value of a label map, with `$hostname` = `agent_hostname`
/// (Categraf's exact behaviour: label values see the configured hostname, not the OS one).
pub(crate) fn expand_all_with(
    map: &BTreeMap<String, String>,
    agent_hostname: &str,
    first_writer_url: Option<&str>,
) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), expand_with(v, agent_hostname, first_writer_url)))
        .collect()
}

/// Replaces `$hostname`, then `$ip` (computed only when present), then environment references.
fn expand_with(value: &str, hostname: &str, first_writer_url: Option<&str>) -> String {
    let mut out = value.replace("$hostname", hostname);
    if out.contains("$ip") {
        let ip = host_ip(std::env::var("HOSTIP").ok(), first_writer_url);
        out = out.replace("$ip", &ip);
    }
    os_expand(&out, |name| std::env::var(name).unwrap_or_default())
}

/// The host IP for `$ip`: `hostip_env` (env HOSTIP) when set; else the local address a UDP socket
/// gets when `connect`ed (no packet is sent) to the first writer's host, unless that host is
/// loopback; else 127.0.0.1. Never contacts any other address.
pub(crate) fn host_ip(hostip_env: Option<String>, first_writer_url: Option<&str>) -> String {
    if let Some(ip) = hostip_env.filter(|s| !s.trim().is_empty()) {
        return ip.trim().to_owned();
    }
    first_writer_url
        .and_then(outbound_ip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .to_string()
}

/// Local address used to reach the writer's host, if it is not loopback.
fn outbound_ip(url: &str) -> Option<IpAddr> {
    let uri: Uri = url.trim().parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    if target.ip().is_loopback() || target.ip().is_unspecified() {
        return None;
    }
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// Go's `os.Expand`: `${NAME}` and `$NAME` (letters, digits, `_`) and one-character special
/// names (`$1`, `$*`, ...) are replaced by `lookup(NAME)`; a bad `${` is dropped; a `$` not
/// followed by a name is kept.
pub(crate) fn os_expand(s: &str, lookup: impl Fn(&str) -> String) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut start = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&s[start..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match (name, width) {
                (None, 0) => out.push('$'),
                (None, _) => {}
                (Some(name), _) => out.push_str(&lookup(name)),
            }
            j += width;
            start = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[start..]);
    out
}

/// Go's `getShellName`: the name after a `$` and how many bytes it spans.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    if b[0] == b'{' {
        if b.len() > 2 && special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (None, 2),
            Some(end) => (Some(&s[1..=end]), end + 2),
            None => (None, 1),
        };
    }
    if special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let len = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (Some(&s[..len]).filter(|n| !n.is_empty()), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn series(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn apply_follows_categraf_order() {
        let labeler = Labeler::new(
            &map(&[("model", "fixed"), ("quantile", "-"), ("service", "ollama")]),
            &map(&[("service", "global"), ("region", "sh"), ("dropme", "-")]),
            Some("host01".into()),
        );
        let mut labels = series(&[("quantile", "0.5"), ("model", "llama3.2"), ("zone", "z")]);
        labeler.apply(&mut labels);
        assert_eq!(
            labels,
            series(&[
                ("agent_hostname", "host01"),
                ("model", "fixed"),
                ("region", "sh"),
                ("service", "ollama"),
                ("zone", "z"),
            ])
        );
    }

    #[test]
    fn a_global_agent_hostname_label_wins_over_the_hostname() {
        let labeler = Labeler::new(
            &map(&[]),
            &map(&[("agent_hostname", "from-global"), ("b", "2")]),
            Some("h".into()),
        );
        let mut labels = series(&[("a", "1")]);
        labeler.apply(&mut labels);
        assert_eq!(
            labels,
            series(&[("a", "1"), ("agent_hostname", "from-global"), ("b", "2")])
        );
    }

    #[test]
    fn every_series_of_every_family_is_labelled() {
        use crate::snapshot::Kind;
        let labeler = Labeler::new(&map(&[("k", "v")]), &map(&[]), None);
        let mut families = vec![
            Family::new("a", "", Kind::Gauge),
            Family::new("b", "", Kind::Counter),
        ];
        families[0].push("", series(&[("model", "m")]), 1.0);
        families[1].push("", Vec::new(), 2.0);
        families[1].push("", series(&[("k", "old")]), 3.0);
        labeler.apply_to_families(&mut families);
        let got: Vec<_> = families
            .iter()
            .flat_map(|f| f.series.iter().map(|s| s.labels.clone()))
            .collect();
        assert_eq!(
            got,
            [
                series(&[("k", "v"), ("model", "m")]),
                series(&[("k", "v")]),
                series(&[("k", "v")]),
            ]
        );
    }

    #[test]
    fn global_and_hostname_only_when_absent() {
        let labeler = Labeler::new(
            &map(&[]),
            &map(&[("model", "g"), ("env", "prod")]),
            Some("h".into()),
        );
        let mut labels = series(&[("model", "m"), ("agent_hostname", "mine")]);
        labeler.apply(&mut labels);
        assert_eq!(
            labels,
            series(&[("agent_hostname", "mine"), ("env", "prod"), ("model", "m")])
        );
    }

    #[test]
    fn no_hostname_when_omitted() {
        let labeler = Labeler::new(&map(&[]), &map(&[]), None);
        let mut labels = series(&[("model", "m")]);
        labeler.apply(&mut labels);
        assert_eq!(labels, series(&[("model", "m")]));
        let mut empty = Vec::new();
        labeler.apply(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn go_os_expand() {
        let env = |name: &str| match name {
            "A" => "x".to_owned(),
            "B_1" => "y".to_owned(),
            "1" => "one".to_owned(),
            _ => String::new(),
        };
        assert_eq!(os_expand("plain", env), "plain");
        assert_eq!(os_expand("${A}-$B_1.$A", env), "x-y.x");
        assert_eq!(os_expand("$1$UNSET|${UNSET}", env), "one|");
        assert_eq!(os_expand("cost $ 5 $", env), "cost $ 5 $");
        assert_eq!(os_expand("a${}b${A", env), "abA");
        assert_eq!(os_expand("é$Aé", env), "éxé");
    }

    #[test]
    fn hostname_resolution() {
        let os = os_hostname();
        assert_eq!(resolve_hostname("", None), os);
        assert_eq!(resolve_hostname("fixed", None), "fixed");
        assert_eq!(resolve_hostname("pre-$hostname", None), format!("pre-{os}"));
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(resolve_hostname("${PATH}", None), path);
        let labels = expand_all_with(&map(&[("h", "$hostname"), ("k", "-")]), "agent", None);
        assert_eq!(labels, map(&[("h", "agent"), ("k", "-")]));
    }

    #[test]
    fn host_ip_sources() {
        assert_eq!(host_ip(Some("10.1.2.3".into()), None), "10.1.2.3");
        assert_eq!(host_ip(None, None), "127.0.0.1");
        assert_eq!(
            host_ip(Some(" ".into()), Some("http://127.0.0.1:17000/w")),
            "127.0.0.1"
        );
        assert_eq!(host_ip(None, Some("not a url")), "127.0.0.1");
        // A private, non-loopback writer: whatever the route, the answer is an IP address.
        let ip = host_ip(None, Some("http://10.255.255.1:17000/prometheus/v1/write"));
        assert!(ip.parse::<IpAddr>().is_ok(), "{ip}");
    }
}
