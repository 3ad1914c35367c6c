//! `TapBody`: forwards exactly the bytes it received (for every endpoint and content type),
//! under `UsageStripped` (as the proxy puts it over a 2xx SSE answer when it added
//! `include_usage`) what `UsageStripper` gives, never panics, and records the request exactly
//! once. Input: an endpoint byte, a
//! byte of flags (content type, status, stripping), then the body as in `common::split`.
#![no_main]

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use ollama_tap::BoxError;
use ollama_tap::Store;
use ollama_tap::tap::include_usage::UsageStripper;
use ollama_tap::tap::{Meter, TapBody, UsageStripped};
use ollama_tap::Endpoint;

/// A body yielding the given chunks, one frame each.
struct Chunks(std::vec::IntoIter<Bytes>);

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

/// Polls `body` to its end, and once more, then drops it; the bytes it forwarded.
fn drain<B: Body<Data = Bytes, Error = BoxError> + Unpin>(mut body: B) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                out.extend_from_slice(frame.data_ref().expect("a data frame"));
            }
            Poll::Ready(Some(Err(e))) => panic!("error frame: {e}"),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("a ready body gave Pending"),
        }
    }
    let again = Pin::new(&mut body).poll_frame(&mut cx);
    assert!(matches!(again, Poll::Ready(None)), "data after the end");
    out
}

const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/x-ndjson"),
    Some("text/event-stream"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

fuzz_target!(|data: &[u8]| {
    // Two bytes of choices, then the body and its split.
    let [endpoint, flags, rest @ ..] = data else {
        return;
    };
    let endpoint = Endpoint::ALL[usize::from(*endpoint) % Endpoint::ALL.len()];
    let content_type = CONTENT_TYPES[usize::from(flags & 0x0f) % CONTENT_TYPES.len()];
    let status = match flags >> 4 & 3 {
        0 => StatusCode::NOT_FOUND,
        1 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    let strip = flags & 0x40 != 0;
    // A snapshot costs more than the rest: the record count is checked on one input in two.
    let check_record = flags & 0x80 != 0;
    let (body, chunks) = common::split(rest);

    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let store = Arc::new(Store::new(16));
    let meter = Meter::new(store.clone(), endpoint, tokio::time::Instant::now());
    let inner = Chunks(
        chunks
            .iter()
            .map(|c| Bytes::copy_from_slice(c))
            .collect::<Vec<_>>()
            .into_iter(),
    );
    let tapped = TapBody::new(inner, meter, status, &headers);
    let stripped = strip && status.is_success() && content_type == Some("text/event-stream");
    let out = if stripped {
        drain(UsageStripped::new(tapped))
    } else {
        drain(tapped)
    };

    if stripped {
        let (mut s, mut want) = (UsageStripper::new(), Vec::new());
        chunks.iter().for_each(|c| s.filter(c, &mut want));
        s.finish(&mut want);
        assert_eq!(out, want, "stripped output differs from UsageStripper's");
    } else {
        assert_eq!(out, body, "forwarded bytes differ from received bytes");
    }
    if check_record {
        let total: f64 = store
            .snapshot()
            .iter()
            .filter(|f| f.name == "ollama_requests_total")
            .flat_map(|f| &f.series)
            .filter(|s| s.suffix.is_empty())
            .map(|s| s.value)
            .sum();
        assert_eq!(total, 1.0, "recorded {total} times");
    }
});
