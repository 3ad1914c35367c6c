//! Tests of the OpenAI/Anthropic reader against recorded answers, split at every byte.

use super::fixtures::*;
use super::*;
use FinishReason::{Length, Stop, ToolCalls};

fn read(json: bool, chunks: &[&[u8]]) -> Reading {
    let mut r = if json {
        OpenAiReader::json()
    } else {
        OpenAiReader::stream()
    };
    for c in chunks {
        r.feed(c);
    }
    r.reading().clone()
}

/// The same reading whole, split at every byte, byte by byte, with `\n` or `\r\n`.
fn check(json: bool, body: &str, want: &Reading) {
    for body in [body.to_string(), body.replace('\n', "\r\n")] {
        let b = body.as_bytes();
        let crlf = b.contains(&b'\r');
        assert_eq!(&read(json, &[b]), want, "whole, crlf: {crlf}");
        for at in 0..=b.len() {
            let (x, y) = b.split_at(at);
            assert_eq!(&read(json, &[x, y]), want, "split at {at}, crlf: {crlf}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(&read(json, &bytes), want, "byte by byte, crlf: {crlf}");
    }
}

fn tokens(prompt: Option<u64>, completion: Option<u64>, cached: Option<u64>) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_prompt_tokens: cached,
        ..Usage::default()
    }
}

/// A whole answer that generated content.
fn answer(model: &str, usage: Usage, finish: Option<FinishReason>) -> Reading {
    Reading {
        complete: true,
        error: false,
        model: Some(model.into()),
        content_seen: true,
        usage,
        finish_reason: finish,
    }
}

fn failure(model: Option<&str>, content_seen: bool) -> Reading {
    Reading {
        error: true,
        model: model.map(Into::into),
        content_seen,
        ..Reading::default()
    }
}

const STREAM: bool = false;
const JSON: bool = true;

#[test]
fn chat_stream_with_include_usage_reads_the_usage_chunk() {
    let want = answer("llama3.2", tokens(Some(26), Some(9), None), Some(Stop));
    check(STREAM, CHAT_STREAM_USAGE, &want);
}

#[test]
fn chat_stream_without_include_usage_has_no_tokens_but_succeeds() {
    let want = answer("qwen2.5:0.5b", Usage::default(), Some(Length));
    check(STREAM, CHAT_STREAM, &want);
}

#[test]
fn chat_stream_reasoning_and_tool_calls_are_content_and_cached_tokens_count() {
    let want = answer(
        "qwen3:8b",
        tokens(Some(88), Some(31), Some(64)),
        Some(ToolCalls),
    );
    check(STREAM, CHAT_STREAM_TOOLS, &want);
}

#[test]
fn chat_json_is_one_whole_answer() {
    let want = answer("llama3.2", tokens(Some(26), Some(7), None), Some(Stop));
    check(JSON, CHAT_JSON, &want);
}

#[test]
fn chat_stream_error_event_fails_the_answer() {
    check(STREAM, CHAT_STREAM_ERROR, &failure(Some("llama3.2"), true));
}

#[test]
fn openai_404_body_is_an_error_not_an_answer() {
    check(JSON, OPENAI_NOT_FOUND, &failure(None, false));
}

#[test]
fn completions_stream_takes_the_last_usage_not_the_zeros() {
    let want = answer("llama3.2", tokens(Some(30), Some(12), None), Some(Stop));
    check(STREAM, COMPLETIONS_STREAM_USAGE, &want);
}

#[test]
fn completions_stream_without_include_usage_has_no_tokens_but_succeeds() {
    let want = answer("qwen2.5-coder:1.5b", Usage::default(), Some(Stop));
    check(STREAM, COMPLETIONS_STREAM, &want);
}

#[test]
fn completions_json_cut_by_max_tokens_is_length() {
    let want = answer("llama3.2", tokens(Some(30), Some(16), None), Some(Length));
    check(JSON, COMPLETIONS_JSON, &want);
}

#[test]
fn embeddings_count_prompt_tokens_and_generate_no_content() {
    let want = Reading {
        content_seen: false,
        ..answer("all-minilm", tokens(Some(8), None, None), None)
    };
    check(JSON, EMBEDDINGS_JSON, &want);
    check(JSON, EMBEDDINGS_BAD_REQUEST, &failure(None, false));
}

#[test]
fn responses_stream_reads_usage_from_response_completed() {
    let want = answer("qwen3:0.6b", tokens(Some(14), Some(4), Some(0)), Some(Stop));
    check(STREAM, RESPONSES_STREAM, &want);
}

#[test]
fn responses_stream_incomplete_ends_the_answer_with_its_reason() {
    let want = answer(
        "gpt-oss:20b",
        tokens(Some(21), Some(16), Some(16)),
        Some(Length),
    );
    check(STREAM, RESPONSES_STREAM_INCOMPLETE, &want);
}

#[test]
fn responses_json_reads_top_level_usage_and_output_text() {
    let want = answer(
        "qwen3:0.6b",
        tokens(Some(11), Some(23), Some(0)),
        Some(Stop),
    );
    check(JSON, RESPONSES_JSON, &want);
}

#[test]
fn responses_stream_failed_is_an_error() {
    check(
        STREAM,
        RESPONSES_STREAM_FAILED,
        &failure(Some("llama3.2"), true),
    );
}

#[test]
fn responses_stream_error_event_is_an_error() {
    check(
        STREAM,
        RESPONSES_STREAM_ERROR,
        &failure(Some("llama3.2"), false),
    );
}

#[test]
fn messages_stream_merges_message_start_and_message_delta_usage() {
    let want = answer("llama3.2", tokens(Some(31), Some(8), None), Some(Stop));
    check(STREAM, MESSAGES_STREAM, &want);
}

#[test]
fn messages_stream_keeps_start_input_and_cache_read_when_delta_has_only_output() {
    let usage = tokens(Some(472), Some(89), Some(384));
    let want = answer("claude-sonnet-4-5", usage, Some(ToolCalls));
    check(STREAM, MESSAGES_STREAM_TOOL_USE, &want);
}

#[test]
fn messages_json_is_one_whole_answer() {
    let want = answer("llama3.2", tokens(Some(14), Some(10), None), Some(Stop));
    check(JSON, MESSAGES_JSON, &want);
}

#[test]
fn messages_stream_error_event_fails_the_answer() {
    let want = Reading {
        usage: tokens(Some(12), Some(0), None),
        ..failure(Some("llama3.2"), true)
    };
    check(STREAM, MESSAGES_STREAM_ERROR, &want);
    check(JSON, MESSAGES_NOT_FOUND, &failure(None, false));
}

/// The 1-based number of the first SSE event after which content has been seen.
fn first_content_event(body: &str) -> Option<usize> {
    let mut r = OpenAiReader::stream();
    body.split_inclusive("\n\n")
        .position(|event| {
            r.feed(event.as_bytes());
            r.reading().content_seen
        })
        .map(|i| i + 1)
}

#[test]
fn content_is_seen_from_the_first_non_empty_delta_on() {
    assert_eq!(first_content_event(CHAT_STREAM_USAGE), Some(2));
    assert_eq!(first_content_event(CHAT_STREAM_TOOLS), Some(1));
    assert_eq!(first_content_event(COMPLETIONS_STREAM), Some(1));
    assert_eq!(first_content_event(RESPONSES_STREAM), Some(5));
    assert_eq!(first_content_event(RESPONSES_STREAM_INCOMPLETE), Some(2));
    assert_eq!(first_content_event(MESSAGES_STREAM), Some(4));
    assert_eq!(first_content_event(MESSAGES_STREAM_TOOL_USE), Some(4));
}

#[test]
fn a_stream_cut_before_its_end_marker_is_not_complete() {
    for (body, end) in [
        (CHAT_STREAM_USAGE, "data: [DONE]\n\n"),
        (MESSAGES_STREAM, "event: message_stop\n"),
        (RESPONSES_STREAM, "event: response.completed\n"),
    ] {
        let cut = &body[..body.find(end).unwrap()];
        let r = read(STREAM, &[cut.as_bytes()]);
        assert!(!r.complete && !r.error && r.content_seen, "{cut}");
    }
    let r = read(STREAM, &[CHAT_STREAM_USAGE.trim_end().as_bytes()]);
    assert!(!r.complete, "[DONE] without its line end");
    let r = read(JSON, &[&CHAT_JSON.as_bytes()[..CHAT_JSON.len() - 3]]);
    assert!(!r.complete && !r.content_seen && r.usage == Usage::default());
}

#[test]
fn tool_calls_alone_are_content_and_empty_values_are_not() {
    let r = read(STREAM, &[br#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}"#, b"\n\n"]);
    assert!(r.content_seen);
    let r = read(STREAM, &[br#"data: {"choices":[{"index":0,"text":"","delta":{"role":"assistant","content":"","reasoning":"","tool_calls":null},"finish_reason":null}],"delta":""}"#, b"\n\n"]);
    assert!(!r.content_seen);
    let r = read(JSON, &[br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]}}]}"#]);
    assert!(r.content_seen);
    let r = read(JSON, &[br#"{"content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use"}"#]);
    assert!(r.content_seen && r.finish_reason == Some(ToolCalls));
    let r = read(JSON, &[br#"{"status":"completed","output":[{"type":"function_call","name":"f","arguments":"{\"a\":1}"}]}"#]);
    assert!(r.content_seen && r.finish_reason == Some(Stop));
    let r = read(JSON, &[br#"{"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":""}]}]}"#]);
    assert!(!r.content_seen);
}

#[test]
fn a_null_usage_or_count_keeps_the_counts_read_so_far() {
    let r = read(STREAM, &[
        b"data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
        b"data: {\"usage\":null}\n\ndata: {\"usage\":{\"prompt_tokens\":null,\"completion_tokens\":3}}\n\n",
    ]);
    assert_eq!(r.usage, tokens(Some(5), Some(3), None));
}

#[test]
fn an_in_progress_response_sets_no_finish_reason() {
    let created = RESPONSES_STREAM.split_inclusive("\n\n").next().unwrap();
    let r = read(STREAM, &[created.as_bytes()]);
    assert_eq!(r.finish_reason, None);
    assert!(!r.complete && !r.error && !r.content_seen);
    assert_eq!(r.model.as_deref(), Some("qwen3:0.6b"));
}

#[test]
fn an_error_is_not_undone_by_a_later_done() {
    let body = format!("{CHAT_STREAM_ERROR}data: [DONE]\n\n");
    let r = read(STREAM, &[body.as_bytes()]);
    assert!(r.complete && r.error && !r.succeeded());
}

#[test]
fn the_first_model_named_wins() {
    let r = read(
        STREAM,
        &[b"data: {\"model\":\"a\"}\n\ndata: {\"model\":\"b\"}\n\n"],
    );
    assert_eq!(r.model.as_deref(), Some("a"));
}

#[test]
fn fields_inside_strings_and_nested_objects_are_ignored() {
    let body = br#"data: {"choices":[{"delta":{"content":"{\"error\":1,\"type\":\"message_stop\"}"}}],"x":{"error":{},"usage":{"prompt_tokens":9},"type":"error"}}"#;
    let r = read(STREAM, &[body, b"\n\n"]);
    assert!(!r.error && !r.complete && r.content_seen);
    assert_eq!(r.usage, Usage::default());
}

#[test]
fn a_null_error_member_is_not_an_error() {
    let r = read(
        JSON,
        &[br#"{"status":"completed","error":null,"usage":{"input_tokens":1}}"#],
    );
    assert!(r.succeeded());
}
