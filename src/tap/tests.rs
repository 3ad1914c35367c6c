//! Tests of the meter and TapBody: each request recorded once, under the right model and outcome.

use super::*;
use crate::snapshot::Family;
use crate::store::DEFAULT_WINDOW;
use axum::http::HeaderValue;
use http_body_util::BodyExt;

/// A body yielding the given chunks, one frame each.
struct Chunks(std::vec::IntoIter<Bytes>);

fn chunks(c: Vec<&'static [u8]>) -> Chunks {
    Chunks(
        c.into_iter()
            .map(Bytes::from_static)
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
    }
}

fn headers(content_type: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h
}

fn value(fams: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams.iter()
        .find(|f| f.name == name)?
        .series
        .iter()
        .find(|s| {
            s.suffix.is_empty()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}

fn meter(store: &Arc<Store>, endpoint: Endpoint, model: Option<&str>) -> Meter {
    let mut m = Meter::new(store.clone(), endpoint, Instant::now());
    m.set_model(model.map(String::from));
    m
}

#[tokio::test]
async fn a_whole_stream_is_recorded_once_as_success_under_the_normalised_model() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    let body = chunks(vec![
        br#"{"model":"llama3.2","message":{"content":"Hi"},"done":false}"#,
        b"\n{\"model\":\"llama3.2\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":4,",
        b"\"eval_count\":9}\n",
    ]);
    let m = meter(&store, Endpoint::Chat, Some("llama3.2"));
    let tapped = TapBody::new(body, m, StatusCode::OK, &headers("application/x-ndjson"));
    let bytes = tapped.collect().await.unwrap().to_bytes();
    assert!(bytes.ends_with(b"\"eval_count\":9}\n"));
    let f = store.snapshot();
    let l = [("model", "llama3.2:latest")];
    assert_eq!(value(&f, "ollama_requests_total", &l), Some(1.0));
    assert_eq!(value(&f, "ollama_requests_success", &l), Some(1.0));
    assert_eq!(value(&f, "ollama_tokens_generated_total", &l), Some(9.0));
    assert_eq!(value(&f, "ollama_prompt_tokens_total", &l), Some(4.0));
    assert_eq!(value(&f, "ollama_requests_in_flight", &l), Some(0.0));
    let e = [
        ("model", "llama3.2:latest"),
        ("endpoint", "/api/chat"),
        ("outcome", "200"),
    ];
    assert_eq!(value(&f, "ollama_endpoint_requests_total", &e), Some(1.0));
}

#[tokio::test]
async fn dropped_mid_stream_is_a_client_abort_under_the_answer_model() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    let body = chunks(vec![br#"{"model":"qwen","response":"a","done":false}"#]);
    let mut tapped = TapBody::new(
        body,
        meter(&store, Endpoint::Generate, None),
        StatusCode::OK,
        &headers("application/x-ndjson"),
    );
    let _ = tapped.frame().await;
    drop(tapped);
    let f = store.snapshot();
    assert_eq!(
        value(&f, "ollama_requests_failed", &[("model", "qwen:latest")]),
        Some(1.0)
    );
    let e = [("model", "qwen:latest"), ("outcome", "client_aborted")];
    assert_eq!(value(&f, "ollama_endpoint_requests_total", &e), Some(1.0));
}

#[tokio::test]
async fn a_404_and_a_stream_without_done_are_failures() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    let body = chunks(vec![br#"{"error":"model 'nope' not found"}"#]);
    let m = meter(&store, Endpoint::Chat, Some("nope"));
    TapBody::new(
        body,
        m,
        StatusCode::NOT_FOUND,
        &headers("application/json; charset=utf-8"),
    )
    .collect()
    .await
    .unwrap();
    let body = chunks(vec![br#"{"model":"m","response":"a","done":false}"#, b"\n"]);
    let m = meter(&store, Endpoint::Generate, Some("m"));
    TapBody::new(body, m, StatusCode::OK, &headers("application/x-ndjson"))
        .collect()
        .await
        .unwrap();
    drop(Meter::new(store.clone(), Endpoint::Chat, Instant::now()));
    let f = store.snapshot();
    assert_eq!(
        value(
            &f,
            "ollama_endpoint_requests_total",
            // A name the backend answered 404 for gets no label of its own.
            &[("model", "other"), ("outcome", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &f,
            "ollama_endpoint_requests_total",
            &[("model", "m:latest"), ("outcome", "stream_error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&f, "ollama_requests_failed", &[("model", UNKNOWN_MODEL)]),
        Some(1.0)
    );
}

#[tokio::test]
async fn usage_chunk_is_read_then_stripped_when_the_agent_asked_for_it() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    let body = chunks(vec![
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        b"data: [DONE]\n\n",
    ]);
    let m = meter(&store, Endpoint::OpenAiChat, Some("m"));
    let tapped = TapBody::new(body, m, StatusCode::OK, &headers("text/event-stream"));
    let out = UsageStripped::new(tapped)
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(!text.contains("usage"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let f = store.snapshot();
    assert_eq!(
        value(
            &f,
            "ollama_tokens_generated_total",
            &[("model", "m:latest")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&f, "ollama_prompt_tokens_total", &[("model", "m:latest")]),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_sized_answer_is_recorded_as_its_last_frame_is_handed_on_not_later() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    // `Full` says it is at its end once its one frame is taken, as a sized body does.
    let json = br#"{"model":"llama3.2","response":"Hi","done":true,"eval_count":2}"#;
    let body = http_body_util::Full::new(Bytes::from_static(json)).map_err(|e| match e {});
    let m = meter(&store, Endpoint::Generate, Some("llama3.2"));
    let mut tapped = TapBody::new(body, m, StatusCode::OK, &headers("application/json"));
    let frame = tapped.frame().await.expect("one frame").unwrap();
    assert_eq!(frame.into_data().unwrap(), &json[..]);
    // Not polled again, not dropped: the request is already recorded, once.
    let f = store.snapshot();
    let l = [("model", "llama3.2:latest")];
    assert_eq!(value(&f, "ollama_requests_success", &l), Some(1.0));
    assert_eq!(value(&f, "ollama_tokens_generated_total", &l), Some(2.0));
    assert_eq!(value(&f, "ollama_requests_in_flight", &l), Some(0.0));
    assert!(tapped.is_end_stream());
    drop(tapped);
    assert_eq!(
        value(&store.snapshot(), "ollama_requests_total", &l),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_in_flight_gauge_goes_up_at_set_model_and_down_once_at_the_record() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    drop(meter(&store, Endpoint::Chat, Some("m"))); // gives m:latest its label
    let l = [("model", "m:latest")];
    let gauge = || value(&store.snapshot(), "ollama_requests_in_flight", &l);
    let mut m = meter(&store, Endpoint::Chat, Some("m"));
    assert_eq!(gauge(), Some(1.0));
    m.fail(Outcome::BackendUnreachable);
    assert_eq!(gauge(), Some(0.0));
    m.fail(Outcome::Timeout); // already recorded: nothing more
    drop(m);
    assert_eq!(gauge(), Some(0.0));
    // Through a TapBody: in flight while the answer streams, out at its end, not again at drop.
    let body = chunks(vec![
        b"{\"model\":\"m\",\"message\":{\"content\":\"Hi\"},\"done\":false}\n",
        b"{\"model\":\"m\",\"done\":true,\"done_reason\":\"stop\"}\n",
    ]);
    let m = meter(&store, Endpoint::Chat, Some("m"));
    let mut tapped = TapBody::new(body, m, StatusCode::OK, &headers("application/x-ndjson"));
    let _ = tapped.frame().await;
    assert_eq!(gauge(), Some(1.0));
    while tapped.frame().await.is_some() {}
    assert_eq!(gauge(), Some(0.0));
    drop(tapped);
    let f = store.snapshot();
    assert_eq!(value(&f, "ollama_requests_in_flight", &l), Some(0.0));
    assert_eq!(value(&f, "ollama_requests_total", &l), Some(3.0));
    assert_eq!(value(&f, "ollama_requests_success", &l), Some(1.0));
}

#[tokio::test]
async fn a_new_models_first_request_is_in_flight_under_other_and_recorded_under_its_name() {
    let store = Arc::new(Store::new(DEFAULT_WINDOW));
    let in_flight = |model| {
        value(
            &store.snapshot(),
            "ollama_requests_in_flight",
            &[("model", model)],
        )
    };
    let body = chunks(vec![br#"{"model":"fresh","response":"a","done":true}"#]);
    let m = meter(&store, Endpoint::Generate, Some("fresh"));
    assert_eq!(in_flight("other"), Some(1.0));
    assert_eq!(in_flight("fresh:latest"), None);
    TapBody::new(body, m, StatusCode::OK, &headers("application/json"))
        .collect()
        .await
        .unwrap();
    let f = store.snapshot();
    let total = |model| value(&f, "ollama_requests_success", &[("model", model)]);
    assert_eq!(total("fresh:latest"), Some(1.0));
    assert_eq!(total("other"), None);
    assert_eq!(in_flight("other"), Some(0.0));
    assert_eq!(in_flight("fresh:latest"), Some(0.0));
}
