//! Test-only: the encoder as it was before the push wrote protobuf by hand, kept verbatim as
//! the reference that the new bytes must equal.
//!
//! The original built a `WriteRequest` of owned `TimeSeries` (two `String`s per label) and let
//! prost encode it, and compressed with a fresh snappy encoder into a fresh buffer. Its label
//! rules and sanitising are copied here too, so these tests check the rules and the wire bytes
//! together: `Encoded::from_families` + `Compressor` (the push), and `encode_families` (the
//! owned form), against the original, on a hand-picked snapshot and on random ones.

use prost::Message;

use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use super::{encode_families, Compressor, Encoded};
use crate::snapshot::{Family, Kind};

// === the original encoder ===

fn original_encode_families(families: &[Family], ts_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(families.iter().map(|f| f.series.len()).sum());
    for family in families {
        for series in &family.series {
            let name = original_metric_name(family.name, series.suffix);
            if name.is_empty() {
                continue;
            }
            let mut labels = Vec::with_capacity(series.labels.len() + 1);
            labels.push(Label::new("__name__", name));
            for (k, v) in &series.labels {
                let k = original_label_name(k);
                if !k.is_empty() && !v.is_empty() {
                    labels.push(Label::new(k, v.as_str()));
                }
            }
            // Stable: among equal names the earlier one stays first, and dedup keeps it.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            labels.dedup_by(|later, earlier| later.name == earlier.name);
            let value = if series.value.is_nan() {
                f64::NAN
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

fn original_compress(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("a remote-write batch is far below snappy's 4 GiB block limit")
}

fn original_metric_name(family: &str, suffix: &str) -> String {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let leading_digit = family
        .bytes()
        .chain(suffix.bytes())
        .next()
        .is_some_and(|b| b.is_ascii_digit());
    if !leading_digit && family.bytes().chain(suffix.bytes()).all(valid) {
        let mut out = String::with_capacity(family.len() + suffix.len());
        out.push_str(family);
        out.push_str(suffix);
        return out;
    }
    original_sanitise(family.chars().chain(suffix.chars()), true)
}

fn original_label_name(name: &str) -> String {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if !name.starts_with(|c: char| c.is_ascii_digit()) && name.bytes().all(valid) {
        return name.to_owned();
    }
    original_sanitise(name.chars(), false)
}

fn original_sanitise(chars: impl Iterator<Item = char>, allow_colon: bool) -> String {
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

// === the comparison ===

/// Every way the push encodes `families` gives the original's bytes, before and after snappy
/// (`compressor` is reused across calls, as a writer's task reuses its own).
fn assert_same_bytes(families: &[Family], ts_ms: i64, compressor: &mut Compressor) {
    let original = WriteRequest {
        timeseries: original_encode_families(families, ts_ms),
    };
    let want = original.encode_to_vec();
    let owned = WriteRequest {
        timeseries: encode_families(families, ts_ms),
    };
    assert_eq!(owned.encode_to_vec(), want, "encode_families, ts {ts_ms}");
    let encoded = Encoded::from_families(families, ts_ms);
    let mut raw = Vec::new();
    encoded.write_to(&mut raw);
    assert_eq!(raw, want, "Encoded::from_families, ts {ts_ms}");
    assert_eq!(encoded.len(), original.timeseries.len());
    assert_eq!(
        compressor.compress(&raw),
        original_compress(&original),
        "compressed, ts {ts_ms}"
    );
    assert_eq!(super::compress(&owned), original_compress(&original));
}

/// A series for [`family`]: suffix, label pairs, value.
type Spec<'a> = (&'static str, &'a [(&'a str, &'a str)], f64);

fn family(name: &'static str, kind: Kind, series: &[Spec<'_>]) -> Family {
    let mut f = Family::new(name, "Help.", kind);
    for (suffix, labels, value) in series {
        let labels = labels.iter().map(|(k, v)| ((*k).into(), (*v).into()));
        f.push(suffix, labels.collect(), *value);
    }
    f
}

#[test]
fn a_varied_snapshot_encodes_to_the_original_bytes() {
    let long = "ü".repeat(9_000); // an 18,000-byte value: three-byte length varints
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let snapshot = [
        family(
            "ollama_requests",
            Kind::Counter,
            &[
                (
                    "_total",
                    &[("model", "llama3"), ("agent_hostname", "h")],
                    3.0,
                ),
                (
                    "_total",
                    &[("zone", "b"), ("Model", "m"), ("a", "1")],
                    f64::NAN,
                ),
                (
                    "_total",
                    &[("a-b", "1st"), ("a.b", "2nd"), ("a_b", "3rd")],
                    stale,
                ),
                (
                    "_total",
                    &[("__name__", "evil"), ("empty", ""), ("", "x")],
                    -0.0,
                ),
                ("_total", &[("9lives", "n"), ("héllo:x", "ünïcødé 🦙")], 0.0),
                (
                    "_total",
                    &[("text", "\"quoted\" \\ \n"), ("long", &long)],
                    1e300,
                ),
            ],
        ),
        family(
            "ollama.weird-name",
            Kind::Gauge,
            &[("", &[], f64::INFINITY)],
        ),
        family(
            "1st-metric",
            Kind::Summary,
            &[("_sum", &[("q", "0.5")], -2.5)],
        ),
        family("", Kind::Gauge, &[("", &[("skipped", "yes")], 1.0)]),
        family(
            "job:rate5m",
            Kind::Gauge,
            &[("", &[("z", "1"), ("_", "u")], 5.0)],
        ),
    ];
    let mut compressor = Compressor::new();
    for ts in [1_700_000_000_000, 0, -1, i64::MIN, i64::MAX] {
        assert_same_bytes(&snapshot, ts, &mut compressor);
    }
    assert_same_bytes(&[], 1, &mut compressor);
}

/// xorshift64*: a fixed seed, so a failure replays; no dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

#[test]
fn random_snapshots_encode_to_the_original_bytes() {
    const NAMES: [&str; 7] = ["ollama_x", "1st-metric", "job:r", "", "ünï", "a.b", "_"];
    const SUFFIXES: [&str; 6] = ["", "_total", "_bucket", "_sum", "9", "-x"];
    const LABELS: [&str; 13] = [
        "model",
        "le",
        "a-b",
        "a_b",
        "a.b",
        "__name__",
        "",
        "9lives",
        "Zeta",
        "agent_hostname",
        "héllo",
        "_",
        "z",
    ];
    let long = "v".repeat(300);
    let values = [
        "",
        "x",
        "ünïcødé 🦙",
        "+Inf",
        "0.5",
        "a\"b\\c",
        long.as_str(),
    ];
    let specials = [
        0.0,
        -0.0,
        1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN,
    ];
    let stamps = [0, -1, 1, i64::MIN, i64::MAX, 1_700_000_000_000];
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    let mut compressor = Compressor::new();
    for _ in 0..300 {
        let mut families = Vec::new();
        for _ in 0..rng.next() % 4 {
            let mut f = Family::new(rng.pick(&NAMES), "", Kind::Gauge);
            for _ in 0..rng.next() % 12 {
                let labels = (0..rng.next() % 8)
                    .map(|_| (rng.pick(&LABELS).into(), rng.pick(&values).into()))
                    .collect();
                let value = match rng.next() % 3 {
                    0 => rng.pick(&specials),
                    _ => f64::from_bits(rng.next()),
                };
                f.push(rng.pick(&SUFFIXES), labels, value);
            }
            families.push(f);
        }
        let ts = match rng.next() % 2 {
            0 => rng.pick(&stamps),
            _ => rng.next() as i64,
        };
        assert_same_bytes(&families, ts, &mut compressor);
    }
}
