//! The native reader at every split point, and its progress-line fast path against the scanner.

use super::*;

/// A real-shaped streamed chat answer: two content lines, then the final object.
const STREAM: &str = concat!(
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.097767Z","message":{"role":"assistant","content":"The"},"done":false}"#,
    "\n",
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.1Z","message":{"role":"assistant","content":" sky"},"done":false}"#,
    "\n",
    r#"{"model":"llama3.2","created_at":"2025-10-26T17:15:24.2Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000}"#,
    "\n",
);

fn expected() -> Usage {
    Usage {
        prompt_tokens: Some(26),
        cached_prompt_tokens: None,
        completion_tokens: Some(298),
        total_duration_ns: Some(5191566416),
        load_duration_ns: Some(2154458),
        prompt_eval_duration_ns: Some(383809000),
        eval_duration_ns: Some(4799921000),
    }
}

/// The usage of a complete reading, None otherwise.
fn usage(r: &Reading) -> Option<Usage> {
    r.complete.then_some(r.usage)
}

fn read(chunks: &[&[u8]]) -> Reading {
    let mut r = NdjsonReader::new();
    for c in chunks {
        r.feed(c);
    }
    r.reading().clone()
}

/// The reading of the scanner alone, without the progress-line fast path.
fn read_parsed(chunks: &[&[u8]]) -> Reading {
    let mut r = NdjsonReader::new();
    for c in chunks {
        r.scan.feed(c, &mut r.state);
    }
    r.reading().clone()
}

/// Streams whose lines take every path: progress lines (skipped once model and content are
/// known), lines before that, nested `done` keys either way, `done` as a value, whitespace
/// a skip must not guess at, an error line, CRLF, and the final object.
const MIXED: &[&str] = &[
    concat!(
        "{\"model\":\"m\",\"response\":\"\",\"done\":false}\n",
        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
        "{\"model\":\"m\",\"response\":\"done\",\"done\":false}\n",
        "{\"model\":\"m\", \"response\":\"b\", \"done\": false}\r\n",
        "{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{\"done\":true}}}]},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{\"done\":false}}}]},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":4,\"eval_count\":3}\n",
    ),
    concat!(
        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
        "{\"model\":\"m\",\"response\":\"b\",\"done\":false}\n",
        "{\"error\":\"an error was encountered while running the model\"}\n",
    ),
    concat!(
        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\r\n",
        "{\"model\":\"m\",\"response\":\"b\",\"done\":false}\r\n",
        "{\"model\":\"m\",\"response\":\"\",\"done\": true,\"eval_count\":2}\r\n",
    ),
];

#[test]
fn skipping_progress_lines_reads_what_parsing_them_reads_at_every_split() {
    for stream in MIXED.iter().chain([&STREAM]) {
        let b = stream.as_bytes();
        let want = read_parsed(&[b]);
        assert_eq!(read(&[b]), want, "{stream}");
        for at in 0..=b.len() {
            let (x, y) = b.split_at(at);
            assert_eq!(read(&[x, y]), want, "split at {at}: {stream}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(read(&bytes), want, "byte by byte: {stream}");
    }
    assert!(read(&[MIXED[0].as_bytes()]).succeeded());
    assert!(read(&[MIXED[1].as_bytes()]).error);
    assert!(read(&[MIXED[2].as_bytes()]).succeeded());
}

#[test]
fn final_stats_from_a_whole_stream() {
    let r = read(&[STREAM.as_bytes()]);
    assert_eq!(usage(&r), Some(expected()));
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert!(r.succeeded() && !r.load_only() && r.content_seen);
    assert_eq!(r.model.as_deref(), Some("llama3.2"));
}

#[test]
fn final_stats_at_every_split_point() {
    let b = STREAM.as_bytes();
    for at in 0..=b.len() {
        let (x, y) = b.split_at(at);
        let r = read(&[x, y]);
        assert_eq!(usage(&r), Some(expected()), "split at {at}");
        assert!(r.succeeded(), "split at {at}");
    }
}

#[test]
fn final_stats_at_every_pair_of_split_points_of_the_final_line() {
    let b = STREAM.as_bytes();
    let start = b.len() - 320;
    for i in start..b.len() {
        for j in i..b.len() {
            let r = read(&[&b[..i], &b[i..j], &b[j..]]);
            assert_eq!(usage(&r), Some(expected()), "splits at {i},{j}");
        }
    }
}

#[test]
fn crlf_line_ends() {
    let crlf = STREAM.replace('\n', "\r\n");
    assert_eq!(usage(&read(&[crlf.as_bytes()])), Some(expected()));
}

#[test]
fn non_stream_object_without_newline() {
    let body = br#"{"model":"llama3.2","created_at":"x","response":"Hello!","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10,"prompt_eval_count":3,"eval_count":2}"#;
    let r = read(&[body]);
    let s = usage(&r).expect("final");
    assert_eq!(
        (s.prompt_tokens, s.completion_tokens, s.load_duration_ns),
        (Some(3), Some(2), None)
    );
    assert!(r.content_seen);
}

#[test]
fn error_line_inside_a_200_stream_is_a_failure() {
    let body = concat!(
        r#"{"model":"m","created_at":"x","response":"a","done":false}"#,
        "\n",
        r#"{"error":"an error was encountered while running the model"}"#,
        "\n"
    );
    let r = read(&[body.as_bytes()]);
    let want = Reading {
        error: true,
        model: Some("m".into()),
        content_seen: true,
        ..Reading::default()
    };
    assert_eq!(r, want);
}

#[test]
fn stream_without_done_is_not_a_success() {
    let r = read(&[
        br#"{"model":"m","response":"a","done":false}"#,
        b"\n{\"model\":\"m\",\"resp",
    ]);
    let want = Reading {
        model: Some("m".into()),
        content_seen: true,
        ..Reading::default()
    };
    assert_eq!(r, want);
}

#[test]
fn load_only_reply() {
    let r = read(&[
        br#"{"model":"llama3.2","created_at":"x","response":"","done":true,"done_reason":"load"}"#,
    ]);
    assert!(r.succeeded() && r.load_only() && !r.content_seen);
    let r = read(&[br#"{"model":"m","response":"","done":true,"done_reason":"unload"}"#]);
    let want = Reading {
        complete: true,
        model: Some("m".into()),
        finish_reason: Some(FinishReason::Unload),
        ..Reading::default()
    };
    assert_eq!(r, want);
}

#[test]
fn absent_counts_stay_absent() {
    let r = read(&[br#"{"model":"m","done":true,"done_reason":"stop","total_duration":5}"#]);
    let s = usage(&r).unwrap();
    assert_eq!(
        (s.prompt_tokens, s.completion_tokens, s.total_duration_ns),
        (None, None, Some(5))
    );
}

#[test]
fn text_that_looks_like_fields_inside_strings_is_ignored() {
    let r = read(&[br#"{"model":"m","response":"{\"done\":true,\"error\":1}","done":false}"#]);
    assert!(!r.error && !r.complete);
}

#[test]
fn error_object_and_404_body() {
    let r = read(&[br#"{"error":"model 'foo' not found"}"#]);
    let want = Reading {
        error: true,
        ..Reading::default()
    };
    assert_eq!(r, want);
}

#[test]
fn tool_calls_count_as_content() {
    let r = read(&[br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}"#]);
    assert!(r.content_seen);
}

#[test]
fn embed_answer_is_one_object_without_done() {
    let body = br#"{"model":"nomic-embed-text","embeddings":[[0.1,0.2]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
    let mut r = NdjsonReader::single_object();
    r.feed(body);
    assert!(r.reading().succeeded());
    assert_eq!(r.reading().usage.prompt_tokens, Some(8));
    let mut r = NdjsonReader::single_object();
    r.feed(br#"{"error":"model 'x' not found"}"#);
    assert!(!r.reading().succeeded());
}
