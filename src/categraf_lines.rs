//! Renders a snapshot (`&[Family]`) as Categraf `--test` lines, byte for byte what Categraf's
//! `printTestMetric` prints: what `ollama-tap --test` writes to stdout (production output,
//! not a test helper).
//!
//! Line: `<unix_seconds> <HH:MM:SS local> <metric> <k=v> <k=v> ... <value>`, single spaces;
//! labels raw (no quoting or escaping), sorted as whole `key=value` strings (Go `sort.Strings`,
//! i.e. bytewise); value as Go's `fmt.Sprint(float64)`, see [`write_go_float`].

use std::fmt::Write as _;

use crate::snapshot::Family;

/// Go's `strconv` 'g' format switches to exponent form at this decimal exponent when the
/// precision is "shortest" (`ftoa.go`: "if precision was the shortest possible, use
/// precision 6 for this decision").
const GO_SHORTEST_EPREC: i32 = 6;

/// Appends one line per series of every family (metric = `family.name + suffix`).
/// `local_hms` is the caller's `HH:MM:SS` local time of `unix_secs`.
pub(crate) fn render(families: &[Family], unix_secs: i64, local_hms: &str, out: &mut String) {
    let mut pairs: Vec<String> = Vec::new();
    for f in families {
        for s in &f.series {
            let _ = write!(out, "{unix_secs} {local_hms} {}{}", f.name, s.suffix);
            pairs.clear();
            pairs.extend(s.labels.iter().map(|(k, v)| format!("{k}={v}")));
            pairs.sort_unstable();
            for p in &pairs {
                out.push(' ');
                out.push_str(p);
            }
            out.push(' ');
            write_go_float(s.value, out);
            out.push('\n');
        }
    }
}

/// Appends `v` formatted as Go's `fmt.Sprint(v)` for a `float64`.
///
/// `%v` on a float64 is `strconv.FormatFloat(v, 'g', -1, 64)` (fmt/print.go: `case 'v':
/// p.fmt.fmtFloat(v, size, 'g', -1)`), and fmt/format.go only adds the sign handling:
/// shortest round-trip digits, then exponent form when the decimal exponent `x` (the value
/// is `d.ddd × 10^x`) satisfies `x < -4 || x >= 6`, else plain decimal. The threshold for
/// the shortest case is 6, not 21 (21 is `encoding/json` / JavaScript). Exponent form has a
/// sign and at least two exponent digits. Specials: `NaN`, `+Inf`, `-Inf`.
///
/// | value       | output                  |
/// |-------------|-------------------------|
/// | 0.5         | `0.5`                   |
/// | 123456      | `123456`                |
/// | 999999      | `999999`                |
/// | 1e6         | `1e+06`                 |
/// | 1234567     | `1.234567e+06`          |
/// | 0.0001      | `0.0001`                |
/// | 0.00001     | `1e-05`                 |
/// | 1.5e-7      | `1.5e-07`               |
/// | 1e21        | `1e+21`                 |
/// | 1e100       | `1e+100`                |
pub(crate) fn write_go_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    // Rust's `{:e}` yields the shortest round-trip digits, e.g. "-1.234567e6", "5e-1", "0e0".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let nd = digits.len() as i32;

    if neg {
        out.push('-');
    }
    // Go: `if exp < -4 || exp >= eprec` → %e
    if !(-4..GO_SHORTEST_EPREC).contains(&exp) {
        // %e: d[.ddd]e±dd
        out.push(char::from(digits[0]));
        if nd > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&b| char::from(b)));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exp.unsigned_abs());
    } else {
        // %f with just enough fraction digits; `dp` digits go before the point.
        let dp = exp + 1;
        let digit = |i: i32| {
            if (0..nd).contains(&i) {
                char::from(digits[i as usize])
            } else {
                '0'
            }
        };
        if dp > 0 {
            out.extend((0..dp).map(digit));
        } else {
            out.push('0');
        }
        let frac = (nd - dp).max(0);
        if frac > 0 {
            out.push('.');
            out.extend((dp..dp + frac).map(digit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Kind;

    fn go(v: f64) -> String {
        let mut s = String::new();
        write_go_float(v, &mut s);
        s
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_float_plain() {
        assert_eq!(go(0.0), "0");
        assert_eq!(go(-0.0), "-0");
        assert_eq!(go(1.0), "1");
        assert_eq!(go(42.0), "42");
        assert_eq!(go(-2.5), "-2.5");
        assert_eq!(go(0.5), "0.5");
        assert_eq!(go(0.25), "0.25");
        assert_eq!(go(100000.0), "100000");
        assert_eq!(go(123456.0), "123456");
        assert_eq!(go(999999.0), "999999");
        assert_eq!(go(12345.678), "12345.678");
        assert_eq!(go(999999.5), "999999.5");
        assert_eq!(go(0.0001), "0.0001");
        assert_eq!(go(0.00012), "0.00012");
        assert_eq!(go(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn go_float_exponent() {
        assert_eq!(go(1e6), "1e+06");
        assert_eq!(go(1234567.0), "1.234567e+06");
        assert_eq!(go(-1234567.0), "-1.234567e+06");
        assert_eq!(go(608863452348.1149), "6.088634523481149e+11");
        assert_eq!(go(0.00001), "1e-05");
        assert_eq!(go(1.5e-7), "1.5e-07");
        assert_eq!(go(1e21), "1e+21");
        assert_eq!(go(1e100), "1e+100");
        assert_eq!(go(5e-324), "5e-324");
        assert_eq!(go(f64::MAX), "1.7976931348623157e+308");
    }

    #[test]
    fn go_float_specials() {
        assert_eq!(go(f64::NAN), "NaN");
        assert_eq!(go(f64::INFINITY), "+Inf");
        assert_eq!(go(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn lines() {
        let mut up = Family::new("ollama_up", "up", Kind::Gauge);
        up.push("", Vec::new(), 1.0);
        let mut rd = Family::new("ollama_response_duration_seconds", "d", Kind::Summary);
        rd.push(
            "",
            l(&[
                ("model", "qwen2.5:0.5b"),
                ("quantile", "0.95"),
                ("agent_hostname", "h1"),
            ]),
            1.5,
        );
        rd.push("_count", l(&[("model", "qwen2.5:0.5b")]), 3000000.0);
        let empty = Family::new("ollama_requests_total", "r", Kind::Counter);
        let mut out = String::new();
        render(&[up, empty, rd], 1754712000, "12:00:00", &mut out);
        assert_eq!(
            out,
            "1754712000 12:00:00 ollama_up 1\n\
             1754712000 12:00:00 ollama_response_duration_seconds agent_hostname=h1 \
             model=qwen2.5:0.5b quantile=0.95 1.5\n\
             1754712000 12:00:00 ollama_response_duration_seconds_count model=qwen2.5:0.5b 3e+06\n"
        );
    }

    #[test]
    fn labels_sorted_as_whole_pairs_and_raw() {
        // bytewise: '=' (0x3D) < '_' (0x5F) < 'b' (0x62). Values are not quoted or escaped.
        let mut f = Family::new("m", "h", Kind::Gauge);
        f.push("", l(&[("ab", "1"), ("a_b", "x y"), ("a", "q\"v")]), 7.0);
        let mut out = String::new();
        render(&[f], -1, "23:59:59", &mut out);
        assert_eq!(out, "-1 23:59:59 m a=q\"v a_b=x y ab=1 7\n");
    }

    #[test]
    fn prefix_keys_sort_by_whole_string() {
        // keys "a" and "a.b": by key "a" < "a.b", but as pairs "a.b=1" < "a=1" ('.' < '=')
        let mut f = Family::new("m", "h", Kind::Gauge);
        f.push("", l(&[("a", "1"), ("a.b", "1")]), 0.0);
        let mut out = String::new();
        render(&[f], 0, "00:00:00", &mut out);
        assert_eq!(out, "0 00:00:00 m a.b=1 a=1 0\n");
    }
}
