//! How the status page writes its figures and text: rates, shares, durations, sizes, ages
//! (as the page's script writes them), and HTML escaping.

use crate::status::RECENT;

/// "last 5 min", or the span the ring covers while it is younger.
pub(super) fn recent_label(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s >= RECENT.as_secs_f64() - 1.0 => "last 5 min".to_owned(),
        Some(s) => format!("last {}", age_span(s)),
        None => "no sample yet".to_owned(),
    }
}

/// A rate: `–`, `0`, `<0.01`, two decimals below 100, else none. (Same as the script's.)
pub(super) fn rate(x: Option<f64>) -> String {
    match x {
        None => "–".to_owned(),
        Some(0.0) => "0".to_owned(),
        Some(x) if x < 0.01 => "<0.01".to_owned(),
        Some(x) if x < 100.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.0}"),
    }
}

/// A share as a percentage with one decimal.
pub(super) fn ratio(x: Option<f64>) -> String {
    x.map_or("–".to_owned(), |x| format!("{:.1} %", x * 100.0))
}

/// Seconds: milliseconds below 1 s, two decimals below 100 s.
pub(super) fn secs(x: Option<f64>) -> String {
    match x {
        None => "–".to_owned(),
        Some(x) if x < 1.0 => format!("{:.0} ms", x * 1000.0),
        Some(x) if x < 100.0 => format!("{x:.2} s"),
        Some(x) => format!("{x:.0} s"),
    }
}

/// Bytes in KiB, MiB or GiB with one decimal.
pub(super) fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1024.0 * 1024.0 * 1024.0 => format!("{:.1} GiB", n / (1024.0 * 1024.0 * 1024.0)),
        n if n >= 1024.0 * 1024.0 => format!("{:.1} MiB", n / (1024.0 * 1024.0)),
        n => format!("{:.1} KiB", n / 1024.0),
    }
}

pub(super) fn count(n: Option<u64>) -> String {
    n.map_or("–".to_owned(), |n| n.to_string())
}

/// `3 s ago`, `5 min ago`.
pub(super) fn age(seconds: f64) -> String {
    format!("{} ago", age_span(seconds))
}

fn age_span(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}

/// Appends `s` as HTML text or attribute value: `& < > " '` become entities.
pub(super) fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}
