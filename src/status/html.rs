//! The status page as HTML: the template (`page.html`, inline CSS and script, nothing loaded
//! from elsewhere) with the figures rendered in, so that a page without script still shows
//! every number. The page's script renders the same structure from `/status.json`; the two
//! must be kept alike (class names and formats). Every string from outside (model, client,
//! URL, error) goes through [`escape`].

use std::fmt::Write as _;

use super::ring::SAMPLES;
use super::{Clients, History, ModelStatus, QueueWait, Status, Writer};
use format::{age, bytes, count, escape, rate, ratio, recent_label, secs};

mod format;

/// The page; its figures go where [`MARK`] is.
const TEMPLATE: &str = include_str!("page.html");
const MARK: &str = "<!--status-->";

/// Sparkline size in SVG units: one unit between two samples of a full ring (90 points for
/// the in-flight samples, 89 for the rates between them, the newest at the right edge).
const SPARK_W: usize = SAMPLES - 1;
const SPARK_H: f64 = 20.0;

/// The whole page with `s` rendered in.
pub(crate) fn page(s: &Status) -> String {
    let (head, tail) = TEMPLATE.split_once(MARK).unwrap_or((TEMPLATE, ""));
    let mut out = String::with_capacity(TEMPLATE.len() + 8192);
    out.push_str(head);
    main(s, &mut out);
    out.push_str(tail);
    out
}

/// `<main id="status">`: what the script replaces on every refresh.
pub(crate) fn main(s: &Status, out: &mut String) {
    header(s, out);
    backend(s, out);
    models(s, out);
    if let Some(queue) = &s.queue_wait {
        queue_wait(queue, s.recent_seconds, out);
    }
    if let Some(top) = &s.clients {
        clients(top, out);
    }
    writers(&s.writers, out);
    footer(&s.history, out);
}

/// The heading: the agent's version, where it listens and the backend it fronts.
fn header(s: &Status, out: &mut String) {
    out.push_str(
        "<main id=\"status\" data-src=\"server\">\n<header><h1>ollama-tap <span class=\"dim\">",
    );
    escape(s.version, out);
    out.push_str("</span></h1><p class=\"dim\">");
    escape(&s.listen, out);
    out.push_str(" → ");
    escape(&s.backend.url, out);
    let _ = write!(
        out,
        " · <span id=\"live\">rendered by the agent; refreshes every {} s with scripts on</span></p></header>",
        s.refresh_seconds
    );
    out.push('\n');
}

/// Up or down, the backend's version, requests in flight, and the models it has loaded.
fn backend(s: &Status, out: &mut String) {
    let b = &s.backend;
    out.push_str("<section id=\"backend\"><h2>Backend</h2><p>");
    out.push_str(if b.up {
        "<b class=\"up\">up</b>"
    } else {
        "<b class=\"down\">down</b>"
    });
    if let Some(v) = &b.version {
        out.push_str(" version ");
        escape(v, out);
    }
    let _ = write!(
        out,
        " · in flight <b class=\"num\" id=\"in-flight\">{}</b> ",
        s.in_flight
    );
    let in_flight: Vec<Option<f64>> = s
        .history
        .in_flight
        .iter()
        .map(|n| Some(*n as f64))
        .collect();
    spark(&in_flight, "in flight", "", out);
    out.push_str("</p>");
    if let Some(e) = &b.error {
        out.push_str("<p class=\"err\">");
        escape(e, out);
        out.push_str("</p>");
    }
    let loaded = b.loaded.iter().map(|m| {
        vec![
            text("name", &m.model),
            text("num", &bytes(m.size_bytes)),
            text("num", &bytes(m.vram_bytes)),
            text("num", &ratio(m.vram_share)),
            text(
                "num",
                &m.context_length.map_or("–".to_owned(), |n| n.to_string()),
            ),
        ]
    });
    table(
        &["loaded model", "size", "VRAM", "VRAM share", "context"],
        "",
        loaded,
        "no model loaded",
        out,
    );
    out.push_str("</section>\n");
}

/// One row per model: recent rates, errors and P95, in flight, totals since start.
fn models(s: &Status, out: &mut String) {
    let _ = write!(
        out,
        "<section id=\"models\"><h2>Models <span class=\"dim\">{} · sparklines: last 15 min</span></h2>",
        recent_label(s.recent_seconds)
    );
    table(
        &[
            "model",
            "req/s",
            "",
            "errors",
            "tok/s",
            "",
            "P95",
            "in flight",
            "requests",
            "failed",
        ],
        "models",
        s.models.iter().map(model_row),
        "no request yet",
        out,
    );
    out.push_str("</section>\n");
}

/// Waits for a parallel slot, per model.
fn queue_wait(queue: &[QueueWait], recent_seconds: Option<f64>, out: &mut String) {
    out.push_str(
        "<section id=\"queue\"><h2>Queue wait <span class=\"dim\">for a parallel slot</span></h2>",
    );
    let rows = queue.iter().map(|q| {
        vec![
            text("name", &q.model),
            text("num", &secs(q.p95_seconds)),
            text("num", &count(q.recent_waits)),
            text("num", &q.waits.to_string()),
        ]
    });
    let recent = format!("waits, {}", recent_label(recent_seconds));
    table(
        &["model", "P95", &recent, "since start"],
        "",
        rows,
        "no wait yet",
        out,
    );
    out.push_str("</section>\n");
}

/// The busiest clients since start.
fn clients(clients: &Clients, out: &mut String) {
    let _ = write!(
        out,
        "<section id=\"clients\"><h2>Clients <span class=\"dim\">top {} of {}, since start</span></h2>",
        clients.top.len(),
        clients.total
    );
    let rows = clients.top.iter().map(|c| {
        vec![
            text("name", &c.client),
            text("num requests", &c.requests.to_string()),
            text("num", &count(c.tokens)),
            text("num", &c.models.to_string()),
        ]
    });
    table(
        &["client", "requests", "tokens", "models"],
        "",
        rows,
        "no client yet",
        out,
    );
    out.push_str("</section>\n");
}

/// One row per remote-write URL.
fn writers(writers: &[Writer], out: &mut String) {
    out.push_str("<section id=\"writers\"><h2>Writers</h2>");
    let rows = writers.iter().map(|w| {
        vec![
            text("name", &w.url),
            text("num", &age(w.seconds_since_last_success)),
            text("num", &w.queue_samples.to_string()),
            text("num", &w.sent_samples.to_string()),
            text("num", &w.failed_samples.to_string()),
            text("num", &w.dropped_samples.to_string()),
            text("num", &w.retries.to_string()),
        ]
    });
    table(
        &[
            "url",
            "last success",
            "queue",
            "sent",
            "failed",
            "dropped",
            "retries",
        ],
        "",
        rows,
        "no writers",
        out,
    );
    out.push_str("</section>\n");
}

/// What the history ring holds, and the link to the figures as JSON.
fn footer(h: &History, out: &mut String) {
    let _ = write!(
        out,
        "<footer class=\"dim\">history: {} of {} samples, one every {} s, {} · <a href=\"status.json\">status.json</a></footer>\n</main>",
        h.samples,
        h.capacity,
        h.interval_seconds,
        bytes(h.bytes as u64)
    );
}

fn model_row(m: &ModelStatus) -> Vec<String> {
    let r = m.recent.as_ref();
    let mut rps = String::new();
    spark(&m.history.requests_per_second, "requests/s", "", &mut rps);
    spark(&m.history.errors_per_second, "errors/s", "e", &mut rps);
    let mut tps = String::new();
    spark(&m.history.tokens_per_second, "tokens/s", "", &mut tps);
    vec![
        text("name", &m.model),
        text("num", &rate(r.map(|r| r.requests_per_second))),
        cell("spark", &rps),
        text("num", &ratio(r.and_then(|r| r.error_ratio))),
        text("num", &rate(r.map(|r| r.tokens_per_second))),
        cell("spark", &tps),
        text("num", &secs(r.and_then(|r| r.p95_seconds))),
        text("num", &m.in_flight.to_string()),
        text("num requests", &m.requests.to_string()),
        text("num failed", &m.failed.to_string()),
    ]
}

/// A table (`columns` as headers; `""` for a sparkline column), or `empty` as a note.
fn table(
    columns: &[&str],
    class: &str,
    rows: impl Iterator<Item = Vec<String>>,
    empty: &str,
    out: &mut String,
) {
    let mut body = String::new();
    for row in rows {
        body.push_str("<tr>");
        for c in row {
            body.push_str(&c);
        }
        body.push_str("</tr>\n");
    }
    if body.is_empty() {
        let _ = write!(out, "<p class=\"dim\">{empty}</p>");
        return;
    }
    let _ = write!(
        out,
        "<div class=\"wide\"><table class=\"{class}\"><thead><tr>"
    );
    for c in columns {
        out.push_str("<th>");
        escape(c, out);
        out.push_str("</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    out.push_str(&body);
    out.push_str("</tbody></table></div>");
}

/// `<td class=…>` with `s` escaped.
fn text(class: &str, s: &str) -> String {
    let mut out = format!("<td class=\"{class}\">");
    escape(s, &mut out);
    out.push_str("</td>");
    out
}

/// `<td class=…>` around markup made here.
fn cell(class: &str, html: &str) -> String {
    format!("<td class=\"{class}\">{html}</td>")
}

/// An inline SVG line of `values` (oldest first, the newest at the right edge; `None` is a
/// gap), scaled to its maximum.
pub(crate) fn spark(values: &[Option<f64>], what: &str, class: &str, out: &mut String) {
    let max = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let mut top = String::new();
    escape(&rate(Some(max)), &mut top);
    let _ = write!(
        out,
        "<svg class=\"spark {class}\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{what}, last 15 min, max {top}\"><path d=\"{}\"/></svg>",
        spark_path(values, max)
    );
}

/// The `d` of a sparkline: `M x y L x y …`, a new `M` after each gap.
pub(crate) fn spark_path(values: &[Option<f64>], max: f64) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    let first = SPARK_W as isize + 1 - values.len() as isize;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else {
            pen_down = false;
            continue;
        };
        let x = first + i as isize;
        let y = if max > 0.0 {
            SPARK_H - 1.0 - (SPARK_H - 2.0) * v / max
        } else {
            SPARK_H - 1.0
        };
        let _ = write!(d, "{}{x} {y:.1}", if pen_down { "L" } else { "M" });
        pen_down = true;
    }
    d
}

#[cfg(test)]
mod tests;
