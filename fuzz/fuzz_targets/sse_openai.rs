//! The SSE framer and `OpenAiReader` (`stream()` for SSE answers, `json()` for JSON ones):
//! never panic and read the same however the answer is split.
#![no_main]

mod common;

use common::{assert_well_nested, split, Log};
use libfuzzer_sys::fuzz_target;
use ollama_tap::tap::openai::OpenAiReader;
use ollama_tap::tap::reading::Reading;
use ollama_tap::tap::sse::SseReader;

fn frame(chunks: &[&[u8]]) -> (Log, bool) {
    let (mut sse, mut log) = (SseReader::new(), Log::default());
    for c in chunks {
        sse.feed(c, &mut log);
    }
    (log, sse.done_seen())
}

fn read(new: fn() -> OpenAiReader, chunks: &[&[u8]]) -> Reading {
    let mut r = new();
    for c in chunks {
        r.feed(c);
    }
    r.reading().clone()
}

fuzz_target!(|data: &[u8]| {
    let (body, chunks) = split(data);
    let (whole, done) = frame(&[body]);
    let (parts, p_done) = frame(&chunks);
    assert_eq!(whole.events, parts.events, "SSE events differ when split");
    assert_eq!(done, p_done, "[DONE] differs when split");
    assert_well_nested(&whole.events);
    for new in [OpenAiReader::stream, OpenAiReader::json] {
        assert_eq!(
            read(new, &[body]),
            read(new, &chunks),
            "reading differs when split"
        );
    }
});
