//! The tap: watches one proxied inference request and records it in the store once, when its
//! answer ends, fails, or the client goes away.
//!
//! [`Meter`] is the per-request record in the making; [`TapBody`] wraps the response body and
//! feeds every chunk, unchanged, through the pure [`ndjson::NdjsonReader`].

pub mod json_scan;
pub mod ndjson;
pub mod route;
pub mod sniff;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::store::{Outcome, Record, Store};
use ndjson::{NdjsonReader, Reading};
use route::Endpoint;

/// Label used when neither the request nor the answer named a model.
pub const UNKNOWN_MODEL: &str = "unknown";

/// One metered request. Records exactly once: through [`Meter::finish`], or on drop (the
/// client went away before the answer ended).
pub struct Meter {
    store: Arc<Store>,
    pub endpoint: Endpoint,
    /// The request's `model`, when the body named one.
    pub model: Option<String>,
    start: Instant,
    recorded: bool,
}

/// How a metered request ended, as far as the tap can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The answer's body was read to its end (or the client went away after the final object).
    Complete,
    /// The backend could not be reached, timed out, or cut the answer.
    BackendFailed,
    /// The client went away first.
    ClientAborted,
}

/// A response body that feeds every data chunk to the reader and finishes the meter.
pub struct TapBody<B> {
    inner: B,
    reader: NdjsonReader,
    meter: Meter,
    /// The status was 2xx.
    status_ok: bool,
}

// === impl Meter ===

impl Meter {
    pub fn new(store: Arc<Store>, endpoint: Endpoint, start: Instant) -> Self {
        Meter {
            store,
            endpoint,
            model: None,
            start,
            recorded: false,
        }
    }

    /// Records the request. `reading` is what the reader saw of the answer, if any.
    pub fn finish(&mut self, end: End, status_ok: bool, reading: Option<&Reading>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let model = model_label(self.model.as_deref(), reading);
        let succeeded =
            end == End::Complete && status_ok && reading.is_some_and(Reading::succeeded);
        let stats = reading.and_then(|r| r.final_stats.as_ref());
        self.store.record(&Record {
            model,
            outcome: if succeeded {
                Outcome::Success
            } else {
                Outcome::Failed
            },
            load_only: reading.is_some_and(Reading::load_only),
            prompt_tokens: stats.and_then(|s| s.prompt_eval_count),
            eval_tokens: stats.and_then(|s| s.eval_count),
            load_duration_ns: stats.and_then(|s| s.load_duration),
            duration: self.start.elapsed(),
        });
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish(End::ClientAborted, false, None);
    }
}

// === impl TapBody ===

impl<B> TapBody<B> {
    pub fn new(inner: B, meter: Meter, status_ok: bool) -> Self {
        TapBody {
            inner,
            reader: NdjsonReader::new(),
            meter,
            status_ok,
        }
    }

    fn finish(&mut self, end: End) {
        self.meter
            .finish(end, self.status_ok, Some(&self.reader.reading));
    }
}

impl<B> Body for TapBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.reader.feed(data);
                }
            }
            Some(Err(_)) => this.finish(End::BackendFailed),
            None => this.finish(End::Complete),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end before the end was seen: the meter finishes on `None`.
        self.meter.recorded && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TapBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away, unless the answer was already whole
        // (the final object passed through and only the end-of-body was not polled).
        let end = if self.reader.reading.succeeded() {
            End::Complete
        } else {
            End::ClientAborted
        };
        self.finish(end);
    }
}

/// The model label for a request: what the body named, else what the answer named.
pub fn model_label<'a>(request: Option<&'a str>, reading: Option<&'a Reading>) -> &'a str {
    request
        .or_else(|| reading.and_then(|r| r.model.as_deref()))
        .unwrap_or(UNKNOWN_MODEL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Family;
    use http_body_util::BodyExt;

    fn value(fams: &[Family], name: &str, model: &str) -> Option<f64> {
        fams.iter()
            .find(|f| f.name == name)?
            .series
            .iter()
            .find(|s| {
                s.suffix.is_empty() && s.labels.iter().any(|(k, v)| k == "model" && v == model)
            })
            .map(|s| s.value)
    }

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
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_whole_stream_is_recorded_once_as_success() {
        let store = Arc::new(Store::new(1000));
        let mut meter = Meter::new(store.clone(), Endpoint::Chat, Instant::now());
        meter.model = Some("llama3.2".into());
        let body = chunks(vec![
            br#"{"model":"llama3.2","message":{"content":"Hi"},"done":false}"#,
            b"\n{\"model\":\"llama3.2\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":4,",
            b"\"eval_count\":9}\n",
        ]);
        let tapped = TapBody::new(body, meter, true);
        let bytes = tapped.collect().await.unwrap().to_bytes();
        assert!(bytes.ends_with(b"\"eval_count\":9}\n"));
        let fams = store.snapshot();
        assert_eq!(value(&fams, "ollama_requests_total", "llama3.2"), Some(1.0));
        assert_eq!(
            value(&fams, "ollama_requests_success", "llama3.2"),
            Some(1.0)
        );
        assert_eq!(
            value(&fams, "ollama_tokens_generated_total", "llama3.2"),
            Some(9.0)
        );
        assert_eq!(
            value(&fams, "ollama_prompt_tokens_total", "llama3.2"),
            Some(4.0)
        );
    }

    #[tokio::test]
    async fn dropped_mid_stream_is_a_failure_under_the_answer_model() {
        let store = Arc::new(Store::new(1000));
        let meter = Meter::new(store.clone(), Endpoint::Generate, Instant::now());
        let body = chunks(vec![br#"{"model":"qwen","response":"a","done":false}"#]);
        let mut tapped = TapBody::new(body, meter, true);
        let _ = tapped.frame().await;
        drop(tapped);
        let fams = store.snapshot();
        assert_eq!(value(&fams, "ollama_requests_total", "qwen"), Some(1.0));
        assert_eq!(value(&fams, "ollama_requests_failed", "qwen"), Some(1.0));
    }

    #[tokio::test]
    async fn a_404_is_a_failure_and_an_unread_meter_records_on_drop() {
        let store = Arc::new(Store::new(1000));
        let mut meter = Meter::new(store.clone(), Endpoint::Chat, Instant::now());
        meter.model = Some("nope".into());
        let body = chunks(vec![br#"{"error":"model 'nope' not found"}"#]);
        TapBody::new(body, meter, false).collect().await.unwrap();
        drop(Meter::new(store.clone(), Endpoint::Chat, Instant::now()));
        let fams = store.snapshot();
        assert_eq!(value(&fams, "ollama_requests_failed", "nope"), Some(1.0));
        assert_eq!(
            value(&fams, "ollama_requests_failed", UNKNOWN_MODEL),
            Some(1.0)
        );
    }
}
