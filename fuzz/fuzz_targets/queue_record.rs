//! The disk queue's record scanner: on any bytes (a queue file a crash tore or a disk damaged)
//! it never panics, accounts for every byte exactly once (records + lost bytes = length, the
//! records in order without overlap), and reading back a record it kept never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ollama_tap::push::record::{readable_series, scan, HEADER};

fuzz_target!(|data: &[u8]| {
    let s = scan(data);
    let mut at = 0u64;
    for meta in &s.records {
        assert!(meta.offset >= at, "records overlap");
        at = meta.offset + meta.size();
        assert!(at <= data.len() as u64);
        let start = meta.offset as usize + HEADER;
        if let Some(series) = readable_series(meta, &data[start..at as usize]) {
            assert_eq!(series, meta.series as usize);
        }
    }
    let kept: u64 = s.records.iter().map(|m| m.size()).sum();
    assert_eq!(kept + s.lost_bytes, data.len() as u64);
});
