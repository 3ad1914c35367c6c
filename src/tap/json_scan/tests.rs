//! Tests of the scanner: exact visitor events, resynchronisation, limits.

use super::*;

/// Records every event as text, for exact assertions.
#[derive(Default)]
struct Log(Vec<String>);

impl Visitor for Log {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        match (path, key) {
            ([], b"model") => 1,
            ([], b"done") => 2,
            ([], b"eval_count") => 3,
            ([], b"message") => 4,
            ([4], b"content") => 5,
            ([], b"usage") => 6,
            ([6], b"prompt_tokens") => 7,
            ([], b"choices") => 8,
            ([8, 8], b"delta") => 9,
            ([8, 8, 9], b"content") => 10,
            _ => 0,
        }
    }
    fn value(&mut self, path: &[u8], value: Value<'_>) {
        let v = match value {
            Value::Str(s) => format!("s:{}", String::from_utf8_lossy(s)),
            Value::Raw(s) => format!("r:{}", String::from_utf8_lossy(s)),
            Value::Container => "c".to_string(),
        };
        let p: Vec<String> = path.iter().map(u8::to_string).collect();
        self.0.push(format!("{}={v}", p.join(".")));
    }
    fn start_object(&mut self) {
        self.0.push("{".into());
    }
    fn end_object(&mut self) {
        self.0.push("}".into());
    }
    fn abort_object(&mut self) {
        self.0.push("abort".into());
    }
}

fn scan_chunks(chunks: &[&[u8]]) -> Vec<String> {
    let mut s = JsonScan::new();
    let mut log = Log::default();
    for c in chunks {
        s.feed(c, &mut log);
    }
    log.0
}

const CHAT: &[u8] = br#"{"model":"llama3.2","created_at":"2023-12-12T14:13:43Z","message":{"role":"assistant","content":"Hi \"there\"\n","images":null},"done":true,"done_reason":"stop","eval_count":298,"context":[1,{"model":"x"},[3]]}"#;

fn chat_events() -> Vec<String> {
    vec![
        "{",
        "1=s:llama3.2",
        "4=c",
        "4.5=s:Hi \\\"there\\\"\\n",
        "2=r:true",
        "3=r:298",
        "}",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[test]
fn reports_top_level_and_second_level_fields() {
    assert_eq!(scan_chunks(&[CHAT]), chat_events());
}

#[test]
fn same_events_at_every_split_point() {
    for at in 0..=CHAT.len() {
        let (a, b) = CHAT.split_at(at);
        assert_eq!(scan_chunks(&[a, b]), chat_events(), "split at {at}");
    }
}

#[test]
fn same_events_byte_by_byte() {
    let chunks: Vec<&[u8]> = CHAT.chunks(1).collect();
    assert_eq!(scan_chunks(&chunks), chat_events());
}

#[test]
fn several_objects_in_one_chunk_with_crlf_and_spaces() {
    let ev = scan_chunks(&[b"{\"done\":false}\r\n{ \"done\" : true , \"eval_count\": 7 }\r\n"]);
    assert_eq!(ev, ["{", "2=r:false", "}", "{", "2=r:true", "3=r:7", "}"]);
}

#[test]
fn pretty_printed_request_body() {
    let ev = scan_chunks(&[
        b"{\n  \"messages\": [{\"role\":\"user\"}],\n  \"model\": \"qwen2.5:0.5b\"\n}\n",
    ]);
    assert_eq!(ev, ["{", "1=s:qwen2.5:0.5b", "}"]);
}

#[test]
fn nested_keys_with_the_same_name_are_not_top_level() {
    let ev = scan_chunks(&[
        br#"{"tool_calls":[{"function":{"arguments":{"done":true,"model":"no"}}}],"done":false}"#,
    ]);
    assert_eq!(ev, ["{", "2=r:false", "}"]);
}

#[test]
fn second_level_only_under_a_wanted_parent() {
    let ev = scan_chunks(&[br#"{"other":{"content":"x"},"usage":{"prompt_tokens":5}}"#]);
    assert_eq!(ev, ["{", "6=c", "6.7=r:5", "}"]);
}

#[test]
fn keys_inside_arrays_of_objects_have_the_array_in_their_path() {
    let ev = scan_chunks(&[br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}},{"delta":{"content":"lo"}}],"content":"top"}"#]);
    assert_eq!(
        ev,
        [
            "{",
            "8=c",
            "8.8.9=c",
            "8.8.9.10=s:Hel",
            "8.8.9=c",
            "8.8.9.10=s:lo",
            "}"
        ]
    );
}

#[test]
fn garbage_line_resynchronises_at_next_object() {
    let ev = scan_chunks(&[b"<html>oops</html>\n{\"done\":tru", b"e}\n"]);
    assert_eq!(ev, ["{", "2=r:true", "}"]);
    let ev = scan_chunks(&[b"{\"model\":\"a\",\"x\":\"unterminated\n{\"done\":true}\n"]);
    assert_eq!(ev, ["{", "1=s:a", "abort", "{", "2=r:true", "}"]);
    let ev = scan_chunks(&[b"{\"model\" 5}{\"done\":true}"]);
    assert_eq!(ev, ["{", "abort", "{", "2=r:true", "}"]);
}

#[test]
fn long_values_are_truncated_not_buffered() {
    let long = "a".repeat(10 * CAP);
    let body = format!("{{\"model\":\"{long}\",\"done\":true}}");
    let ev = scan_chunks(&[body.as_bytes()]);
    let model = format!("1=s:{}", &long[..CAP]);
    assert_eq!(ev, ["{", model.as_str(), "2=r:true", "}"]);
}

#[test]
fn huge_uninteresting_string_is_skipped() {
    let big = "x".repeat(1 << 20);
    let body = format!("{{\"response\":\"{big}\",\"eval_count\":3}}");
    let mut s = JsonScan::new();
    let mut log = Log::default();
    for c in body.as_bytes().chunks(4096) {
        s.feed(c, &mut log);
    }
    assert_eq!(log.0, ["{", "3=r:3", "}"]);
}

#[test]
fn too_deep_nesting_is_invalid_not_a_panic() {
    let body = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
    let mut s = JsonScan::new();
    let mut log = Log::default();
    s.feed(body.as_bytes(), &mut log);
    assert!(s.invalid);
    assert_eq!(log.0, ["{", "abort"]);
}
