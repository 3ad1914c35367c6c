//! Tests of the model (and user) sniffer at every split point, plain and zstd.

use super::super::json_scan::CAP;
use super::*;

fn sniff(chunks: &[&[u8]]) -> Option<String> {
    let mut s = ModelSniffer::new();
    for c in chunks {
        s.feed(c);
    }
    s.into_model()
}

#[test]
fn model_first_or_last_pretty_or_compact() {
    assert_eq!(
        sniff(&[br#"{"model":"llama3.2","prompt":"hi"}"#]).as_deref(),
        Some("llama3.2")
    );
    let openai = br#"{"messages":[{"role":"user","content":"model: \"no\""}],"model":"qwen2.5:0.5b","stream":true}"#;
    assert_eq!(sniff(&[openai]).as_deref(), Some("qwen2.5:0.5b"));
    let curl = b"{\n  \"model\": \"qwen2.5:0.5b\",\n  \"prompt\": \"Why is the sky blue?\"\n}";
    assert_eq!(sniff(&[curl]).as_deref(), Some("qwen2.5:0.5b"));
}

#[test]
fn model_split_at_every_position() {
    let body = br#"{"messages":[{"content":"x"}],"model":"hf.co/org/repo-GGUF:Q4_K_M"}"#;
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(
            sniff(&[a, b]).as_deref(),
            Some("hf.co/org/repo-GGUF:Q4_K_M"),
            "split at {at}"
        );
    }
}

#[test]
fn escaped_names_decode_to_one_model() {
    assert_eq!(
        sniff(&[br#"{"model":"hf.co\/org\/repo"}"#]).as_deref(),
        Some("hf.co/org/repo")
    );
    assert_eq!(
        sniff(&[br#"{"model":"q\u0077en"}"#]).as_deref(),
        Some("qwen")
    );
    assert_eq!(sniff(&[br#"{"model":"bad\x"}"#]).as_deref(), Some("bad\\x"));
}

#[test]
fn stops_reading_once_found() {
    let mut s = ModelSniffer::new();
    s.feed(br#"{"model":"m","prompt":""#);
    assert!(s.finished());
    assert_eq!(s.model(), Some("m"));
}

#[test]
fn bad_bodies_give_no_model_and_finish() {
    for body in [
        &b"not json at all"[..],
        br#"{"prompt":"no model here"}"#,
        br#"{"model":42}"#,
        br#"{"model":null,"prompt":"x"}"#,
        br#"{"model" "x"}"#,
    ] {
        let mut s = ModelSniffer::new();
        s.feed(body);
        assert_eq!(s.model(), None, "{}", String::from_utf8_lossy(body));
    }
    let mut s = ModelSniffer::new();
    s.feed(br#"{"model":42}"#);
    assert!(s.finished());
}

#[test]
fn model_from_a_zstd_body_even_cut_short() {
    let body = br#"{"messages":[{"role":"user","content":"hello there"}],"model":"llama3.2","stream":true}"#;
    let z =
        ruzstd::encoding::compress_to_vec(&body[..], ruzstd::encoding::CompressionLevel::Fastest);
    assert_eq!(model_from_zstd(&z).as_deref(), Some("llama3.2"));
    assert_eq!(model_from_zstd(b"not zstd"), None);
    // A body of several zstd blocks, cut after the first: the start still decodes.
    let mut seed = 7u32;
    let noise: String = (0..600_000)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'a' + (seed >> 16) as u8 % 26)
        })
        .collect();
    let long = format!(r#"{{"model":"m1","prompt":"{noise}"}}"#);
    let z = ruzstd::encoding::compress_to_vec(
        long.as_bytes(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    assert_eq!(
        model_from_zstd(&z[..z.len() * 3 / 4]).as_deref(),
        Some("m1")
    );
}

#[test]
fn body_that_stops_half_way() {
    assert_eq!(sniff(&[br#"{"prompt":"abc"#]), None);
    assert_eq!(sniff(&[br#"{"model":"ab"#]), None);
}

// --- `user`, for client_from_body ---------------------------------------------------------

/// (model, user, finished) of a sniffer with the user wanted, fed `chunks`.
fn sniff_user(chunks: &[&[u8]]) -> (Option<String>, Option<String>, bool) {
    let mut s = ModelSniffer::with_user();
    for c in chunks {
        s.feed(c);
    }
    let finished = s.finished();
    let (model, user) = s.into_found();
    (model, user, finished)
}

fn found(model: &str, user: &str) -> (Option<String>, Option<String>, bool) {
    (Some(model.to_owned()), Some(user.to_owned()), true)
}

#[test]
fn user_and_model_are_found_in_either_order_at_every_split_point() {
    for body in [
        &br#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"user":"alice@example.com"}"#[..],
        br#"{"user":"alice@example.com","messages":[{"role":"user","content":"{\"user\":\"x\"}"}],"model":"llama3.2"}"#,
        b"{\n  \"user\" : \"alice@example.com\",\n  \"model\" : \"llama3.2\"\n}",
    ] {
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(
                sniff_user(&[a, b]),
                found("llama3.2", "alice@example.com"),
                "{} split at {at}",
                String::from_utf8_lossy(body)
            );
        }
        // three pieces, every pair of split points
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let got = sniff_user(&[&body[..i], &body[i..j], &body[j..]]);
                assert_eq!(got, found("llama3.2", "alice@example.com"), "{i} {j}");
            }
        }
    }
}

#[test]
fn a_user_with_escapes_is_decoded_at_every_split_point() {
    let body = br#"{"model":"m","user":"a\"b\\c\nd\u00e9"}"#;
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(
            sniff_user(&[a, b]),
            found("m", "a\"b\\c\nd\u{e9}"),
            "split at {at}"
        );
    }
}

#[test]
fn without_the_user_wanted_the_sniffer_is_finished_at_the_model() {
    let mut s = ModelSniffer::new();
    s.feed(br#"{"model":"m","#);
    assert!(s.finished(), "a model-only sniffer never waits for a user");
    s.feed(br#""user":"alice"}"#);
    assert_eq!((s.model(), s.user()), (Some("m"), None));
}

#[test]
fn with_the_user_wanted_it_reads_until_both_are_read_or_the_object_ends() {
    let mut s = ModelSniffer::with_user();
    s.feed(br#"{"model":"m","prompt":"long"#);
    assert!(!s.finished(), "the user may still come");
    s.feed(br#"","user":"u","#);
    assert!(s.finished());
    assert_eq!((s.model(), s.user()), (Some("m"), Some("u")));

    // no user at all: finished at the end of the object, model kept
    let (model, user, finished) = sniff_user(&[br#"{"model":"m","prompt":"x"}"#]);
    assert_eq!((model.as_deref(), user, finished), (Some("m"), None, true));
    // the user first: still waits for the model
    let mut s = ModelSniffer::with_user();
    s.feed(br#"{"user":"u","#);
    assert!(!s.finished());
}

#[test]
fn a_user_that_is_not_a_top_level_string_names_nobody() {
    for body in [
        &br#"{"model":"m","user":42}"#[..],
        br#"{"model":"m","user":null}"#,
        br#"{"model":"m","user":{"id":"u"}}"#,
        br#"{"model":"m","metadata":{"user":"u"}}"#,
        br#"{"model":"m","messages":[{"user":"u"}]}"#,
    ] {
        let (model, user, finished) = sniff_user(&[body]);
        let text = String::from_utf8_lossy(body);
        assert_eq!((model.as_deref(), user), (Some("m"), None), "{text}");
        assert!(finished, "{text}");
    }
    // a non-string user is read: the sniffer does not wait for another one
    let mut s = ModelSniffer::with_user();
    s.feed(br#"{"user":1,"model":"m","#);
    assert!(s.finished());
}

#[test]
fn the_model_is_the_same_whether_or_not_the_user_is_wanted() {
    for body in [
        &br#"{"model":"a","model":"b","user":"u"}"#[..],
        br#"{"model":1,"user":"u","model":"b"}"#,
        br#"{"user":"u","user":"v","model":"m"}"#,
        br#"{"prompt":"x"}"#,
        br#"not json"#,
        br#"{"model":"m""#,
    ] {
        let plain = sniff(&[body]);
        let (model, _, _) = sniff_user(&[body]);
        assert_eq!(plain, model, "{}", String::from_utf8_lossy(body));
    }
    // the first `user` wins, like the first `model`
    assert_eq!(
        sniff_user(&[br#"{"user":"u","user":"v","model":"m"}"#]),
        found("m", "u")
    );
}

#[test]
fn a_long_user_is_kept_to_the_scanner_cap() {
    let long = "x".repeat(10_000);
    let body = format!(r#"{{"model":"m","user":"{long}"}}"#);
    let (_, user, finished) = sniff_user(&[body.as_bytes()]);
    assert_eq!(user.as_deref(), Some(&long[..CAP]));
    assert!(finished);
}

#[test]
fn the_user_of_a_zstd_body_is_found_too() {
    let body = br#"{"messages":[],"user":"dave","model":"llama3.2"}"#;
    let z =
        ruzstd::encoding::compress_to_vec(&body[..], ruzstd::encoding::CompressionLevel::Fastest);
    let s = sniff_zstd(&z, ModelSniffer::with_user());
    assert_eq!(
        s.into_found(),
        (Some("llama3.2".into()), Some("dave".into()))
    );
}
