//! Go's side of the wire: JSON written in Go struct field order with `encoding/json`'s escaping
//! ([`J`], [`obj!`]), `time.RFC3339Nano` timestamps, and the error messages of gin's
//! `ShouldBindJSON` ([`bind`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::{Map, Value};

use super::ExpectedMetrics;

// ---------------------------------------------------------------------------------------------
// Ordered JSON (Go field order), with Go's HTML escaping
// ---------------------------------------------------------------------------------------------

/// A JSON value whose objects keep the order their fields were pushed in (Go's struct order).
#[derive(Clone, Debug)]
pub(super) enum J {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f32),
    S(String),
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
}

impl From<bool> for J {
    fn from(v: bool) -> J {
        J::Bool(v)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> J {
        J::U(v)
    }
}
impl From<usize> for J {
    fn from(v: usize) -> J {
        J::U(v as u64)
    }
}
impl From<i64> for J {
    fn from(v: i64) -> J {
        J::I(v)
    }
}
impl From<f32> for J {
    fn from(v: f32) -> J {
        J::F(v)
    }
}
impl From<&str> for J {
    fn from(v: &str) -> J {
        J::S(v.to_string())
    }
}
impl From<String> for J {
    fn from(v: String) -> J {
        J::S(v)
    }
}
impl From<&String> for J {
    fn from(v: &String) -> J {
        J::S(v.clone())
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> J {
        J::A(v)
    }
}

impl serde::Serialize for J {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::U(n) => s.serialize_u64(*n),
            J::I(n) => s.serialize_i64(*n),
            J::F(f) => s.serialize_f32(*f),
            J::S(x) => s.serialize_str(x),
            J::A(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            J::O(v) => {
                let mut m = s.serialize_map(Some(v.len()))?;
                for (k, x) in v {
                    m.serialize_entry(k, x)?;
                }
                m.end()
            }
        }
    }
}

/// `obj! {"k" => v, ...}`: a [`J`] object with these fields in this order. The sibling modules
/// see it because `mod.rs` declares `gojson` first, with `#[macro_use]`.
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {
        J::O(vec![$(($k, J::from($v))),*])
    };
}

impl J {
    /// Go's `encoding/json` output: compact, and `<`, `>`, `&`, U+2028, U+2029 escaped.
    pub(super) fn go(&self) -> String {
        let s = serde_json::to_string(self).expect("serialize");
        if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            return s;
        }
        let mut out = String::with_capacity(s.len() + 16);
        for c in s.chars() {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        out
    }

    /// Appends field `k` (no-op on a non-object).
    pub(super) fn push(&mut self, k: &'static str, v: impl Into<J>) {
        if let J::O(o) = self {
            o.push((k, v.into()));
        }
    }

    /// Pushes `k` unless `v` is 0 (Go's `omitempty`).
    pub(super) fn push_nz(&mut self, k: &'static str, v: u64) {
        if v != 0 {
            self.push(k, v);
        }
    }

    /// The `api.Metrics` fields of a final object, each left out when 0.
    pub(super) fn push_metrics(&mut self, m: &ExpectedMetrics) {
        self.push_nz("total_duration", m.total_duration);
        self.push_nz("load_duration", m.load_duration);
        self.push_nz("prompt_eval_count", m.prompt_eval_count.unwrap_or(0));
        self.push_nz("prompt_eval_duration", m.prompt_eval_duration);
        self.push_nz("eval_count", m.eval_count.unwrap_or(0));
        self.push_nz("eval_duration", m.eval_duration);
    }
}

// ---------------------------------------------------------------------------------------------
// Go time
// ---------------------------------------------------------------------------------------------

/// `created_at`-style timestamp: RFC 3339 with up to 9 fraction digits (trailing zeros trimmed), UTC `Z`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let nanos = d.subsec_nanos();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, dd) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if nanos > 0 {
        let mut f = format!("{nanos:09}");
        while f.ends_with('0') {
            f.pop();
        }
        s.push('.');
        s.push_str(&f);
    }
    s.push('Z');
    s
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds (`created` of /v1 replies).
pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Request binding (gin's ShouldBindJSON) and Go's JSON error messages
// ---------------------------------------------------------------------------------------------

/// Why a body could not be bound.
pub(super) enum BindErr {
    /// Empty (or whitespace-only) body: Go's `io.EOF`.
    Missing,
    /// Go's error message.
    Msg(String),
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses a request body as gin's `ShouldBindJSON` into Go struct `go_type` would, checking the
/// type of the fields in `fields` (`(name, "string"|"bool"|"array"|"object")`).
pub(super) fn bind(
    body: &[u8],
    go_type: &str,
    fields: &[(&str, &str)],
) -> Result<Map<String, Value>, BindErr> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BindErr::Missing);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| BindErr::Msg(go_json_error(body, &e)))?;
    let map = match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(BindErr::Msg(format!(
                "json: cannot unmarshal {} into Go value of type {go_type}",
                json_kind(&other)
            )))
        }
    };
    let short = go_type.rsplit('.').next().unwrap_or(go_type);
    for (name, want) in fields {
        if let Some(v) = map.get(*name) {
            let got = json_kind(v);
            if got != "null" && got != *want {
                let go_want = match *want {
                    "array" => "[]",
                    "object" => "map",
                    w => w,
                };
                return Err(BindErr::Msg(format!(
                    "json: cannot unmarshal {got} into Go struct field {short}.{name} of type {go_want}"
                )));
            }
        }
    }
    Ok(map)
}

/// Go's `encoding/json` message for the syntax error serde found in `body`.
fn go_json_error(body: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() || e.is_io() {
        return "unexpected EOF".to_string();
    }
    // Find the offending character from serde's 1-based line/column.
    let text = String::from_utf8_lossy(body);
    let c = text
        .split('\n')
        .nth(e.line().saturating_sub(1))
        .and_then(|l| l.chars().nth(e.column().saturating_sub(1)))
        .unwrap_or('?');
    let msg = e.to_string();
    let what = if msg.contains("trailing characters") {
        "after top-level value"
    } else if msg.contains("key must be a string") {
        "looking for beginning of object key string"
    } else {
        "looking for beginning of value"
    };
    format!("invalid character '{c}' {what}")
}
