//! Renders a snapshot (`&[Family]`) in the Prometheus text exposition format, version 0.0.4.

use std::fmt::Write as _;

use crate::snapshot::{Family, Kind};

/// `Content-Type` of a `/metrics` response rendered by [`render`].
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Largest magnitude below which an integral `f64` is printed as an integer (2^53: every
/// integer up to it is exact).
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Appends every family to `out`: `# HELP`, `# TYPE`, then one line per series as
/// `name+suffix{k="v",...} value`. Families without series still get their HELP and TYPE.
pub(crate) fn render(families: &[Family], out: &mut String) {
    for f in families {
        out.push_str("# HELP ");
        out.push_str(f.name);
        out.push(' ');
        escape_help(f.help, out);
        out.push('\n');
        out.push_str("# TYPE ");
        out.push_str(f.name);
        out.push(' ');
        out.push_str(kind_str(f.kind));
        out.push('\n');
        for s in &f.series {
            out.push_str(f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_label_value(v, out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(s.value, out);
            out.push('\n');
        }
    }
}

/// The `# TYPE` keyword of a kind.
fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Summary => "summary",
        Kind::Histogram => "histogram",
    }
}

/// Help text escaping: `\` → `\\`, newline → `\n`.
fn escape_help(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Label value escaping: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Sample value: integers (|v| < 2^53) without a decimal point, `NaN`, `+Inf`, `-Inf`,
/// anything else in Rust's shortest round-trip `{}` form (never exponent notation).
fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < EXACT_INT {
        // `as i64` is exact here; it also turns -0.0 into "0".
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(families: &[Family]) -> String {
        let mut s = String::new();
        render(families, &mut s);
        s
    }

    fn value(v: f64) -> String {
        let mut s = String::new();
        write_value(v, &mut s);
        s
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counter_and_gauge() {
        let mut up = Family::new("ollama_up", "1 when up.", Kind::Gauge);
        up.push("", Vec::new(), 1.0);
        let mut req = Family::new(
            "ollama_requests_total",
            "Requests, by model.",
            Kind::Counter,
        );
        req.push("", l(&[("model", "llama3:8b")]), 42.0);
        req.push("", l(&[("model", "qwen2.5:0.5b"), ("env", "prod")]), 7.0);
        assert_eq!(
            rendered(&[up, req]),
            "# HELP ollama_up 1 when up.\n\
             # TYPE ollama_up gauge\n\
             ollama_up 1\n\
             # HELP ollama_requests_total Requests, by model.\n\
             # TYPE ollama_requests_total counter\n\
             ollama_requests_total{model=\"llama3:8b\"} 42\n\
             ollama_requests_total{model=\"qwen2.5:0.5b\",env=\"prod\"} 7\n"
        );
    }

    #[test]
    fn summary_with_suffixes() {
        let mut f = Family::new("d_seconds", "Duration, seconds.", Kind::Summary);
        f.push("", l(&[("model", "m"), ("quantile", "0.5")]), 0.25);
        f.push("_sum", l(&[("model", "m")]), 1.5);
        f.push("_count", l(&[("model", "m")]), 3.0);
        assert_eq!(
            rendered(&[f]),
            "# HELP d_seconds Duration, seconds.\n\
             # TYPE d_seconds summary\n\
             d_seconds{model=\"m\",quantile=\"0.5\"} 0.25\n\
             d_seconds_sum{model=\"m\"} 1.5\n\
             d_seconds_count{model=\"m\"} 3\n"
        );
    }

    #[test]
    fn empty_family_keeps_help_and_type() {
        let f = Family::new("h", "Histogram.", Kind::Histogram);
        assert_eq!(rendered(&[f]), "# HELP h Histogram.\n# TYPE h histogram\n");
        assert_eq!(rendered(&[]), "");
    }

    #[test]
    fn escaping() {
        let mut f = Family::new("e", "back\\slash\nnew \"quote\"", Kind::Gauge);
        f.push("", l(&[("v", "a\\b\"c\nd")]), 1.0);
        assert_eq!(
            rendered(&[f]),
            "# HELP e back\\\\slash\\nnew \"quote\"\n\
             # TYPE e gauge\n\
             e{v=\"a\\\\b\\\"c\\nd\"} 1\n"
        );
    }

    #[test]
    fn values() {
        assert_eq!(value(0.0), "0");
        assert_eq!(value(-0.0), "0");
        assert_eq!(value(42.0), "42");
        assert_eq!(value(-3.0), "-3");
        assert_eq!(value(1e15), "1000000000000000");
        assert_eq!(value(9_007_199_254_740_991.0), "9007199254740991");
        assert_eq!(value(9_007_199_254_740_992.0), "9007199254740992");
        assert_eq!(value(0.5), "0.5");
        assert_eq!(value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(value(1.5e-7), "0.00000015");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
    }
}
