//! The `include_usage` option: `inject` only ever inserts `INJECTED` right after the first `{`
//! (and never twice); `UsageStripper` never panics, gives the same output however the stream
//! is split, and removes nothing but whole usage-bearing SSE events.
#![no_main]

mod common;

use common::split;
use libfuzzer_sys::fuzz_target;
use ollama_tap::tap::include_usage::{inject, UsageStripper, INJECTED, MAX_EVENT};

fn strip(chunks: &[&[u8]]) -> Vec<u8> {
    let (mut s, mut out) = (UsageStripper::new(), Vec::new());
    for c in chunks {
        let before = out.len();
        s.filter(c, &mut out);
        // What left so far is a prefix of what came in (checked again on the whole below).
        assert!(out.len() >= before);
    }
    s.finish(&mut out);
    out
}

/// The input's SSE events as the stripper frames them: each ends with the `\n` of a blank line
/// (`""` or `"\r"`); the last item is the unfinished rest (maybe empty).
fn events(input: &[u8]) -> Vec<&[u8]> {
    let (mut out, mut start, mut line) = (Vec::new(), 0, 0);
    for (i, &b) in input.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        if matches!(&input[line..i], b"" | b"\r") {
            out.push(&input[start..=i]);
            start = i + 1;
        }
        line = i + 1;
    }
    out.push(&input[start..]);
    out
}

/// Whether the stripper may drop this event: one `data:` line with a `"usage"` key, then the
/// blank line, no larger than `MAX_EVENT`.
fn removable(event: &[u8]) -> bool {
    let lines = event.iter().filter(|&&b| b == b'\n').count();
    event.len() <= MAX_EVENT
        && event.starts_with(b"data:")
        && lines == 2
        && event.windows(7).any(|w| w == b"\"usage\"")
}

/// Whether `out` is `input` less some removable whole events (the unfinished rest is kept).
fn is_input_less_whole_events(input: &[u8], out: &[u8]) -> bool {
    let mut events = events(input);
    let rest = events.pop().unwrap_or_default();
    let mut reach = vec![0usize];
    for e in events {
        let mut next = Vec::new();
        for &p in &reach {
            if out[p..].starts_with(e) {
                next.push(p + e.len());
            }
            if removable(e) {
                next.push(p);
            }
        }
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            return false;
        }
        reach = next;
    }
    reach.iter().any(|&p| &out[p..] == rest)
}

fuzz_target!(|data: &[u8]| {
    let (body, chunks) = split(data);

    // inject: None, or the body with INJECTED after its first `{`; never injected twice.
    if let Some(out) = inject(body) {
        let open = body.iter().position(|&b| b == b'{').expect("a `{`") + 1;
        assert_eq!(out, [&body[..open], INJECTED, &body[open..]].concat());
        assert_eq!(inject(&out), None, "injected twice");
    }

    // UsageStripper.
    let whole = strip(&[body]);
    assert_eq!(whole, strip(&chunks), "stripped output differs when split");
    if !body.windows(7).any(|w| w == b"\"usage\"") {
        assert_eq!(whole, body, "a stream without usage was changed");
    }
    assert!(
        is_input_less_whole_events(body, &whole),
        "output is not the input less whole usage events"
    );
});
