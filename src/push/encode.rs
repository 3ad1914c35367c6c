//! Snapshot → remote-write series: the label set every series is sent with.
//!
//! Every series gets `__name__` plus its labels, sorted by name, no name twice (the first one
//! wins: `__name__`, then the series' labels in their order), no empty name or value (the label
//! is dropped), names sanitised the way Categraf's writer does. Receivers do not all check this
//! (Prometheus answers duplicate names with a 500, which a sender would retry for ever), so the
//! agent does it here, once.
//!
//! The rules live in [`LabelSet`] alone, and two encoders read it: [`encode_families`] builds
//! `TimeSeries` structs (the public, owned form), `push/wire.rs` writes the protobuf bytes
//! straight from the snapshot. A `LabelSet` borrows every name and value that is valid as it
//! is, so the byte path allocates nothing per series.

use std::borrow::Cow;

use super::proto::{Label, Sample, TimeSeries};
use crate::snapshot::{Family, Series};

/// The canonical quiet NaN. Prometheus reserves `0x7ff0000000000002` for stale markers, so
/// every NaN the agent sends is normalised to this one.
const NAN: f64 = f64::NAN;

/// The metric name's label.
const NAME: &str = "__name__";

/// One series' labels as sent: sorted by name, `__name__` among them.
///
/// Names and values are borrowed from the snapshot wherever they are valid as they are, and
/// `__name__`'s value is the family name and the suffix as two pieces, so the metric name is
/// never concatenated into a `String` of its own. One set is filled again for every series,
/// so its vector is allocated once per snapshot.
#[derive(Debug, Default)]
pub(super) struct LabelSet<'a> {
    pairs: Vec<Pair<'a>>,
}

/// One label: its name, and its value as two pieces to be written one after the other (the
/// second is `""` but for `__name__`).
#[derive(Debug)]
pub(super) struct Pair<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
    pub(crate) value_tail: &'a str,
}

// === impl LabelSet ===

impl<'a> LabelSet<'a> {
    /// Fills the set for `series` of `family` (`family_valid`: [`metric_chars`] of its name).
    /// False when the metric name sanitises to nothing: such a series is skipped.
    fn fill(&mut self, family: &'a Family, family_valid: bool, series: &'a Series) -> bool {
        let (value, value_tail) = metric_name_parts(family.name, family_valid, series.suffix);
        if value.is_empty() && value_tail.is_empty() {
            return false;
        }
        self.pairs.clear();
        self.pairs.push(Pair {
            name: Cow::Borrowed(NAME),
            value,
            value_tail,
        });
        for (k, v) in &series.labels {
            let name = label_name_cow(k);
            if !name.is_empty() && !v.is_empty() {
                let value = Cow::Borrowed(v.as_str());
                self.pairs.push(Pair {
                    name,
                    value,
                    value_tail: "",
                });
            }
        }
        // Usually sorted already (the labeler sorts, and `__name__` sorts before lower-case
        // names); strictly increasing also means no name twice.
        if !self.pairs.is_sorted_by(|a, b| a.name < b.name) {
            // Stable: among equal names the earlier one stays first, and dedup keeps it.
            self.pairs.sort_by(|a, b| a.name.cmp(&b.name));
            self.pairs
                .dedup_by(|later, earlier| later.name == earlier.name);
        }
        true
    }

    pub(super) fn pairs(&self) -> &[Pair<'a>] {
        &self.pairs
    }
}

// === impl Pair ===

impl Pair<'_> {
    pub(super) fn value_len(&self) -> usize {
        self.value.len() + self.value_tail.len()
    }
}

/// Calls `f` with the label set and the value (NaN normalised) of every series of the
/// snapshot that is sent, in snapshot order.
pub(super) fn for_each_series<'a>(families: &'a [Family], mut f: impl FnMut(&LabelSet<'a>, f64)) {
    let mut set = LabelSet::default();
    for family in families {
        // Checked once per family, not once per series.
        let family_valid = metric_chars(family.name);
        for series in &family.series {
            if set.fill(family, family_valid, series) {
                let value = if series.value.is_nan() {
                    NAN
                } else {
                    series.value
                };
                f(&set, value);
            }
        }
    }
}

/// One snapshot as remote-write series: one sample each, all at `ts_ms` (milliseconds since the
/// Unix epoch). A series whose metric name sanitises to nothing is skipped.
///
/// The owned form, for callers that want the structs; the push itself encodes with
/// `Encoded::from_families`, which gives the same bytes without building them.
pub fn encode_families(families: &[Family], ts_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(families.iter().map(|f| f.series.len()).sum());
    for_each_series(families, |set, value| {
        let labels = set
            .pairs()
            .iter()
            .map(|p| Label::new(p.name.as_ref(), [&p.value, p.value_tail].concat()))
            .collect();
        out.push(TimeSeries {
            labels,
            samples: vec![Sample {
                value,
                timestamp: ts_ms,
            }],
        });
    });
    out
}

// === sanitising ===

/// Bit of [`CHARS`]: the byte may appear in a label name (`[a-zA-Z0-9_]`).
const LABEL_CHAR: u8 = 1;
/// Bit of [`CHARS`]: the byte may appear in a metric name (`[a-zA-Z0-9_:]`).
const METRIC_CHAR: u8 = 2;

/// What each byte may be part of: one lookup per byte on the per-series path.
const CHARS: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' {
            t[b] = LABEL_CHAR | METRIC_CHAR;
        } else if c == b':' {
            t[b] = METRIC_CHAR;
        }
        b += 1;
    }
    t
};

/// `s` may start a metric name as it is: `[a-zA-Z0-9_:]*`, no leading digit.
fn metric_chars(s: &str) -> bool {
    !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| CHARS[b as usize] & METRIC_CHAR != 0)
}

/// `family + suffix`, valid as a Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
#[cfg(test)]
pub(crate) fn metric_name(family: &str, suffix: &str) -> String {
    match metric_name_parts(family, metric_chars(family), suffix) {
        (Cow::Borrowed(family), suffix) => [family, suffix].concat(),
        (Cow::Owned(whole), _) => whole,
    }
}

/// [`metric_name`] as two pieces to write one after the other: `family` and `suffix` as they
/// are when valid (every name the agent makes), else the sanitised whole and `""`.
/// `family_valid` is [`metric_chars`] of `family`, which [`for_each_series`] checks once.
fn metric_name_parts<'a>(
    family: &'a str,
    family_valid: bool,
    suffix: &'a str,
) -> (Cow<'a, str>, &'a str) {
    let suffix_valid = if family.is_empty() {
        metric_chars(suffix)
    } else {
        suffix.bytes().all(|b| CHARS[b as usize] & METRIC_CHAR != 0)
    };
    if family_valid && suffix_valid {
        return (Cow::Borrowed(family), suffix);
    }
    let whole = sanitise(family.chars().chain(suffix.chars()), true);
    (Cow::Owned(whole), "")
}

/// A label name valid for Prometheus: `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// Categraf replaces `- . space /` with `_`; every other character outside `[a-zA-Z0-9_]`
/// becomes `_` too, and a leading digit gets a `_` prefix.
#[cfg(test)]
pub(crate) fn label_name(name: &str) -> String {
    label_name_cow(name).into_owned()
}

/// [`label_name`], borrowing `name` when it is valid as it is (the common case).
fn label_name_cow(name: &str) -> Cow<'_, str> {
    let valid = |b: u8| CHARS[b as usize] & LABEL_CHAR != 0;
    if !name.starts_with(|c: char| c.is_ascii_digit()) && name.bytes().all(valid) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(sanitise(name.chars(), false))
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
    fn a_metric_name_that_sanitises_to_nothing_skips_the_series() {
        let mut empty = Family::new("", "", Kind::Gauge);
        empty.push("", labels(&[("a", "b")]), 1.0);
        let mut kept = Family::new("", "", Kind::Gauge);
        kept.push("_x", labels(&[]), 2.0);
        let ts = encode_families(&[empty, kept], 0);
        assert_eq!(ts.len(), 1);
        assert_eq!(names(&ts[0]), [("__name__", "_x")]);
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
    fn the_byte_table_holds_the_character_classes() {
        for b in 0..=255u8 {
            let label = b.is_ascii_alphanumeric() || b == b'_';
            assert_eq!(CHARS[b as usize] & LABEL_CHAR != 0, label, "{b}");
            assert_eq!(
                CHARS[b as usize] & METRIC_CHAR != 0,
                label || b == b':',
                "{b}"
            );
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
}
