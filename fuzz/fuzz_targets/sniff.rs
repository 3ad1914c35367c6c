//! The request `model` sniffer: never panics, finds the same model however the body is split
//! (and whether or not it is fed past the point where it finished), and `model_from_zstd`
//! never panics on any bytes and agrees with the plain sniffer on a compressed body.
#![no_main]

mod common;

use common::{flag, split};
use libfuzzer_sys::fuzz_target;
use ollama_tap::tap::sniff::{model_from_zstd, ModelSniffer};

fn sniff(chunks: &[&[u8]]) -> (Option<String>, bool) {
    let mut s = ModelSniffer::new();
    for c in chunks {
        s.feed(c);
    }
    let finished = s.finished();
    (s.into_model(), finished)
}

/// Like the proxy: feed chunks only until the sniffer says it is finished.
fn sniff_until_finished(chunks: &[&[u8]]) -> Option<String> {
    let mut s = ModelSniffer::new();
    for c in chunks {
        if s.finished() {
            break;
        }
        s.feed(c);
    }
    s.into_model()
}

fuzz_target!(|data: &[u8]| {
    let (body, chunks) = split(data);
    let whole = sniff(&[body]);
    assert_eq!(whole, sniff(&chunks), "model differs when split");
    assert_eq!(
        whole.0,
        sniff_until_finished(&chunks),
        "feeding on changed it"
    );
    if let Some(m) = &whole.0 {
        assert!(
            m.len() <= 200 * 3,
            "model label unbounded: {} bytes",
            m.len()
        );
    }

    // Any bytes as a zstd body (the fuzzer finds the magic number from the dictionary).
    let _ = model_from_zstd(body);
    let _ = model_from_zstd(data);
    // A real zstd body: the same model as the plain body, and a cut one finds it or nothing.
    if flag(data, 4) {
        let z =
            ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(model_from_zstd(&z), whole.0, "zstd body read differently");
        let cut = chunks.first().map_or(0, |c| c.len()).min(z.len());
        let m = model_from_zstd(&z[..cut]);
        assert!(m.is_none() || m == whole.0, "cut zstd body gave {m:?}");
    }
});
