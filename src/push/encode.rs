//! Snapshot → remote-write: families to `TimeSeries` with valid label sets, and a request to
//! the snappy block-compressed body.
//!
//! Every series gets `__name__` plus its labels, sorted by name, no name twice (the first one
//! wins: `__name__`, then the series' labels in their order), no empty name or value (the label
//! is dropped), names sanitised the way Categraf's writer does. Receivers do not all check this
//! (Prometheus answers duplicate names with a 500, which a sender would retry for ever), so the
//! agent does it here, once.

use prost::Message;

use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::snapshot::Family;

/// The canonical quiet NaN. Prometheus reserves `0x7ff0000000000002` for stale markers, so
/// every NaN the agent sends is normalised to this one.
const NAN: f64 = f64::NAN;

// === encoding ===

/// One snapshot as remote-write series: one sample each, all at `ts_ms` (milliseconds since the
/// Unix epoch). A series whose metric name sanitises to nothing is skipped.
pub fn encode_families(families: &[Family], ts_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(families.iter().map(|f| f.series.len()).sum());
    for family in families {
        for series in &family.series {
            let name = metric_name(family.name, series.suffix);
            if name.is_empty() {
                continue;
            }
            let mut labels = Vec::with_capacity(series.labels.len() + 1);
            labels.push(Label::new("__name__", name));
            for (k, v) in &series.labels {
                let k = label_name(k);
                if !k.is_empty() && !v.is_empty() {
                    labels.push(Label::new(k, v.as_str()));
                }
            }
            // Stable: among equal names the earlier one stays first, and dedup keeps it.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            labels.dedup_by(|later, earlier| later.name == earlier.name);
            let value = if series.value.is_nan() {
                NAN
            } else {
                series.value
            };
            out.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value,
                    timestamp: ts_ms,
                }],
            });
        }
    }
    out
}

/// The request as protobuf, compressed with snappy's block format (never the framed format).
pub fn compress(request: &WriteRequest) -> Vec<u8> {
    compress_raw(&request.encode_to_vec())
}

/// Snappy block compression of an encoded request.
pub(super) fn compress_raw(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("a remote-write batch is far below snappy's 4 GiB block limit")
}

// === sanitising ===

/// `family + suffix`, valid as a Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn metric_name(family: &str, suffix: &str) -> String {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let leading_digit = family
        .bytes()
        .chain(suffix.bytes())
        .next()
        .is_some_and(|b| b.is_ascii_digit());
    if !leading_digit && family.bytes().chain(suffix.bytes()).all(valid) {
        // The common case (every name the agent makes): one allocation, no per-char work.
        let mut out = String::with_capacity(family.len() + suffix.len());
        out.push_str(family);
        out.push_str(suffix);
        return out;
    }
    sanitise(family.chars().chain(suffix.chars()), true)
}

/// A label name valid for Prometheus: `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// Categraf replaces `- . space /` with `_`; every other character outside `[a-zA-Z0-9_]`
/// becomes `_` too, and a leading digit gets a `_` prefix.
pub fn label_name(name: &str) -> String {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if !name.starts_with(|c: char| c.is_ascii_digit()) && name.bytes().all(valid) {
        return name.to_owned();
    }
    sanitise(name.chars(), false)
}

fn sanitise(chars: impl Iterator<Item = char>, allow_colon: bool) -> String {
    let mut out = String::with_capacity(chars.size_hint().0 + 1);
    for c in chars {
        if out.is_empty() && c.is_ascii_digit() {
            out.push('_');
        }
        let keep = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        out.push(if keep { c } else { '_' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Kind;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn every_series_gets_its_name_and_sorted_labels() {
        let mut f = Family::new("ollama_requests", "Requests.", Kind::Counter);
        f.push(
            "_total",
            labels(&[("zone", "b"), ("Model", "m"), ("a", "1")]),
            3.0,
        );
        let ts = encode_families(&[f], 1234);
        assert_eq!(ts.len(), 1);
        assert_eq!(
            names(&ts[0]),
            [
                ("Model", "m"),
                ("__name__", "ollama_requests_total"),
                ("a", "1"),
                ("zone", "b")
            ]
        );
        assert_eq!(
            ts[0].samples,
            [Sample {
                value: 3.0,
                timestamp: 1234
            }]
        );
    }

    #[test]
    fn empty_values_and_empty_names_are_dropped() {
        let mut f = Family::new("g", "", Kind::Gauge);
        f.push("", labels(&[("empty", ""), ("", "x"), ("keep", "y")]), 1.0);
        let ts = encode_families(&[f], 0);
        assert_eq!(names(&ts[0]), [("__name__", "g"), ("keep", "y")]);
    }

    #[test]
    fn duplicate_names_after_sanitising_keep_the_first() {
        let mut f = Family::new("g", "", Kind::Gauge);
        let pairs = [
            ("a-b", "first"),
            ("a.b", "second"),
            ("__name__", "evil"),
            ("a_b", "3rd"),
        ];
        f.push("", labels(&pairs), 1.0);
        let ts = encode_families(&[f], 0);
        assert_eq!(names(&ts[0]), [("__name__", "g"), ("a_b", "first")]);
    }

    #[test]
    fn names_are_sanitised_as_categraf_does() {
        assert_eq!(label_name("a-b.c d/e"), "a_b_c_d_e");
        assert_eq!(label_name("ok_Name9"), "ok_Name9");
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(label_name("héllo:x"), "h_llo_x");
        assert_eq!(metric_name("job:rate5m", ""), "job:rate5m");
        assert_eq!(metric_name("1st-metric", "_sum"), "_1st_metric_sum");
        assert_eq!(metric_name("", ""), "");
    }

    #[test]
    fn the_fast_path_for_valid_names_gives_what_the_char_by_char_rules_give() {
        let names = [
            "",
            "a",
            "_",
            "le",
            "agent_hostname",
            "ok_Name9",
            "9lives",
            "0",
            "a-b",
            "a:b",
            ":a",
            "héllo",
            "ünïcode",
            "x y",
            "__name__",
            "Z9_:",
        ];
        for n in names {
            assert_eq!(label_name(n), sanitise(n.chars(), false), "label {n:?}");
            for suffix in ["", "_total", "9", ":x", "-y"] {
                assert_eq!(
                    metric_name(n, suffix),
                    sanitise(n.chars().chain(suffix.chars()), true),
                    "metric {n:?} + {suffix:?}"
                );
            }
        }
    }

    #[test]
    fn one_snapshot_has_one_timestamp() {
        let mut f = Family::new("h", "", Kind::Histogram);
        f.push("_bucket", labels(&[("le", "+Inf")]), 2.0);
        f.push("_sum", labels(&[]), 0.5);
        f.push("_count", labels(&[]), 2.0);
        let ts = encode_families(&[f], 99);
        let stamps: Vec<i64> = ts.iter().map(|t| t.samples[0].timestamp).collect();
        assert_eq!(stamps, [99, 99, 99]);
        assert_eq!(ts[0].label("__name__"), Some("h_bucket"));
        assert_eq!(ts[0].label("le"), Some("+Inf"));
    }

    #[test]
    fn nan_is_never_the_stale_marker() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut f = Family::new("g", "", Kind::Gauge);
        f.push("", labels(&[]), stale);
        let v = encode_families(&[f], 0)[0].samples[0].value;
        // Normalised to the canonical quiet NaN, whatever NaN came in.
        assert_eq!(v.to_bits(), 0x7ff8_0000_0000_0000);
        assert_eq!(v.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn compress_uses_the_snappy_block_format() {
        let mut f = Family::new("g", "", Kind::Gauge);
        f.push("", labels(&[("a", "b")]), 1.0);
        let req = WriteRequest {
            timeseries: encode_families(&[f], 5),
        };
        let body = compress(&req);
        // The block format starts with the uncompressed length as a varint (the framed format
        // would start with the stream identifier chunk ff 06 00 00 "sNaPpY").
        let len = req.encoded_len();
        assert!(len < 128, "one varint byte: {len}");
        assert_eq!(body[0], len as u8);
        assert_eq!(snap::raw::decompress_len(&body).unwrap(), len);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(&*raw).unwrap(), req);
    }
}
