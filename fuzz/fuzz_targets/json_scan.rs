//! `JsonScan`: never panics, reports the same events however the input is split, and the
//! events nest properly with bounded values.
#![no_main]

mod common;

use common::{assert_well_nested, flag, split, Log};
use libfuzzer_sys::fuzz_target;
use ollama_tap::tap::json_scan::JsonScan;

/// The events, the `invalid` flag and whether the scanner ended between objects.
fn scan(chunks: &[&[u8]], stop_after_first: bool) -> (Log, bool, bool) {
    let mut scan = JsonScan::new();
    let mut log = Log {
        stop_after_first,
        ..Log::default()
    };
    for c in chunks {
        scan.feed(c, &mut log);
    }
    let (invalid, top) = (scan.invalid, scan.at_top());
    (log, invalid, top)
}

fuzz_target!(|data: &[u8]| {
    let (body, chunks) = split(data);
    let stop = flag(data, 4);
    let (whole, invalid, top) = scan(&[body], stop);
    let (parts, p_invalid, p_top) = scan(&chunks, stop);
    assert_eq!(whole.events, parts.events, "events differ when split");
    assert_eq!(
        (invalid, top),
        (p_invalid, p_top),
        "state differs when split"
    );
    assert_well_nested(&whole.events);
});
