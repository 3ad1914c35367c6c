//! Categraf duration values: a Go `time.ParseDuration` string ("15s", "1m30s") or a bare number of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration exactly as written in a Categraf TOML file, not yet checked.
///
/// Keeping the raw form lets the loader name the file and field when the value is bad.
#[derive(Debug, Clone, PartialEq)]
pub enum DurationValue {
    /// A string, parsed like Go's `time.ParseDuration` ("" means zero, as in Categraf).
    Text(String),
    /// A bare integer: seconds.
    Int(i64),
    /// A bare float: seconds (fractions are kept; Categraf truncates them).
    Float(f64),
}

/// Why a duration value was rejected. Display is one line and names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The value parsed but is below zero.
    #[error("{0} is negative")]
    Negative(String),
    /// The value is not a Go duration string.
    #[error("{0} is not a duration ({1}; expected e.g. \"15s\", \"1m30s\", \"500ms\" or a number of seconds)")]
    Invalid(String, &'static str),
    /// The value does not fit (Go's limit is about 292 years).
    #[error("{0} is too large")]
    Overflow(String),
}

/// Largest duration Go can represent: `i64::MAX` nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

// === impl DurationValue ===

impl DurationValue {
    /// Converts to a `Duration`; negative or unparseable values are errors naming the value.
    pub fn to_duration(&self) -> Result<Duration, DurationError> {
        match self {
            DurationValue::Text(s) => parse_go_duration(s),
            DurationValue::Int(n) if *n < 0 => Err(DurationError::Negative(self.to_string())),
            DurationValue::Int(n) => Ok(Duration::from_secs(n.unsigned_abs())),
            DurationValue::Float(f) if f.is_nan() => {
                Err(DurationError::Invalid(self.to_string(), "not a number"))
            }
            DurationValue::Float(f) if *f < 0.0 => Err(DurationError::Negative(self.to_string())),
            DurationValue::Float(f) => Duration::try_from_secs_f64(*f)
                .ok()
                .filter(|d| d.as_nanos() <= MAX_NANOS)
                .ok_or_else(|| DurationError::Overflow(self.to_string())),
        }
    }
}

impl fmt::Display for DurationValue {
    /// Shows the value as it appears in TOML: strings quoted, numbers bare.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationValue::Text(s) => write!(f, "{s:?}"),
            DurationValue::Int(n) => write!(f, "{n}"),
            DurationValue::Float(x) if x.is_nan() => f.write_str("nan"),
            DurationValue::Float(x) if x.is_infinite() && *x > 0.0 => f.write_str("inf"),
            DurationValue::Float(x) if x.is_infinite() => f.write_str("-inf"),
            DurationValue::Float(x) => write!(f, "{x:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

// === impl DurationVisitor ===

/// Accepts a string, an integer or a float; anything else is a type error.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = DurationValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string like \"15s\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
        Ok(DurationValue::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<DurationValue, E> {
        Ok(DurationValue::Text(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
        Ok(DurationValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
        i64::try_from(v)
            .map(DurationValue::Int)
            .map_err(|_| E::custom(format!("{v} is too large for a duration")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationValue, E> {
        Ok(DurationValue::Float(v))
    }
}

/// Parses a duration the way Go's `time.ParseDuration` does, rejecting negative values.
///
/// Units: `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`; several may be chained ("1h2m3.5s").
/// Like Categraf, the empty string means zero.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let shown = || format!("{input:?}");
    let invalid = |why: &'static str| DurationError::Invalid(shown(), why);
    let mut s = input.trim();
    if s.is_empty() {
        return Ok(Duration::ZERO);
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid("no number"));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // Whole part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u128 = 0;
        for b in s[..int_len].bytes() {
            whole = whole * 10 + u128::from(b - b'0');
            if whole > MAX_NANOS {
                return Err(DurationError::Overflow(shown()));
            }
        }
        s = &s[int_len..];
        // Fraction part: keep up to 18 digits, like Go's precision loss beyond that.
        let (mut frac, mut scale, mut frac_len) = (0u128, 1u128, 0usize);
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            for b in rest[..frac_len].bytes().take(18) {
                frac = frac * 10 + u128::from(b - b'0');
                scale *= 10;
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid("expected a number"));
        }
        // Unit.
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = match &s[..unit_len] {
            "" => return Err(invalid("missing unit")),
            "ns" => 1u128,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid("unknown unit")),
        };
        s = &s[unit_len..];
        total += whole * unit + frac * unit / scale;
        if total > MAX_NANOS {
            return Err(DurationError::Overflow(shown()));
        }
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(shown()));
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow(shown()))?;
    let nanos =
        u32::try_from(total % 1_000_000_000).map_err(|_| DurationError::Overflow(shown()))?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(s: &str) -> Duration {
        match parse_go_duration(s) {
            Ok(d) => d,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[derive(serde::Deserialize)]
    struct Doc {
        d: DurationValue,
    }

    fn from_toml(text: &str) -> Result<Duration, String> {
        let doc: Doc = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        doc.d.to_duration().map_err(|e| e.to_string())
    }

    #[test]
    fn go_strings() {
        assert_eq!(go("15s"), Duration::from_secs(15));
        assert_eq!(go("1m30s"), Duration::from_secs(90));
        assert_eq!(go("500ms"), Duration::from_millis(500));
        assert_eq!(go("1.5h"), Duration::from_secs(5400));
        assert_eq!(go("2h45m"), Duration::from_secs(2 * 3600 + 45 * 60));
        assert_eq!(go("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(go(".5s"), Duration::from_millis(500));
        assert_eq!(go("5.s"), Duration::from_secs(5));
        assert_eq!(go("10us"), Duration::from_micros(10));
        assert_eq!(go("10µs"), Duration::from_micros(10));
        assert_eq!(go("7ns"), Duration::from_nanos(7));
        assert_eq!(go("+3s"), Duration::from_secs(3));
        assert_eq!(go("0"), Duration::ZERO);
        assert_eq!(go("-0s"), Duration::ZERO);
        assert_eq!(go(""), Duration::ZERO);
    }

    #[test]
    fn go_string_errors_name_the_value() {
        for bad in ["abc", "15", "1x", "s", ".s", "1m30", "-", "1.2.3s"] {
            let err = parse_go_duration(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = parse_go_duration("-1s").expect_err("negative").to_string();
        assert_eq!(err, "\"-1s\" is negative");
        let err = parse_go_duration("3000000h")
            .expect_err("overflow")
            .to_string();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn toml_values() {
        assert_eq!(from_toml("d = \"15s\""), Ok(Duration::from_secs(15)));
        assert_eq!(from_toml("d = \"1m30s\""), Ok(Duration::from_secs(90)));
        assert_eq!(from_toml("d = 15"), Ok(Duration::from_secs(15)));
        assert_eq!(from_toml("d = 1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(from_toml("d = 0"), Ok(Duration::ZERO));
    }

    #[test]
    fn toml_errors() {
        let err = from_toml("d = \"abc\"").expect_err("abc");
        assert!(err.starts_with("\"abc\" is not a duration"), "{err}");
        assert_eq!(from_toml("d = \"-1s\""), Err("\"-1s\" is negative".into()));
        assert_eq!(from_toml("d = -5"), Err("-5 is negative".into()));
        assert_eq!(from_toml("d = -0.5"), Err("-0.5 is negative".into()));
        let err = from_toml("d = true").expect_err("bool");
        assert!(err.contains("a duration string"), "{err}");
        let err = from_toml("d = nan").expect_err("nan");
        assert!(err.starts_with("nan is not a duration"), "{err}");
        assert_eq!(from_toml("d = inf"), Err("inf is too large".into()));
    }
}
