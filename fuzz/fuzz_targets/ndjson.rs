//! `NdjsonReader` (native answers, streamed or single-object): never panics and reads the same
//! however the answer is split.
#![no_main]

mod common;

use common::split;
use libfuzzer_sys::fuzz_target;
use ollama_tap::tap::ndjson::NdjsonReader;
use ollama_tap::tap::reading::Reading;

fn read(new: fn() -> NdjsonReader, chunks: &[&[u8]]) -> Reading {
    let mut r = new();
    for c in chunks {
        r.feed(c);
    }
    r.reading().clone()
}

fuzz_target!(|data: &[u8]| {
    let (body, chunks) = split(data);
    for new in [NdjsonReader::new, NdjsonReader::single_object] {
        let whole = read(new, &[body]);
        assert_eq!(whole, read(new, &chunks), "reading differs when split");
        if whole.complete {
            assert!(body.contains(&b'}'), "complete without an object");
        }
    }
});
