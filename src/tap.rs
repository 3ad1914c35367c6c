//! The tap: watches one proxied inference request and records it in the store once, when its
//! answer ends, fails, or the client goes away.
//!
//! [`Meter`] is the per-request record in the making; [`TapBody`] wraps the response body and
//! feeds every chunk, unchanged, through the pure reader of the endpoint's dialect
//! ([`ndjson`] for Ollama's own API, [`openai`] for the OpenAI and Anthropic ones).

pub mod include_usage;
pub mod json_scan;
pub(crate) mod model_label;
pub mod ndjson;
pub mod openai;
mod progress_line;
pub mod reading;
pub mod sniff;
pub mod sse;
mod usage_stripped;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::error::{BoxError, IdleTimeout};
use crate::store::{InFlight, Store};
use crate::vocab::{ApiFamily, Endpoint, Outcome, Record, UNKNOWN_MODEL};
use ndjson::NdjsonReader;
use openai::OpenAiReader;
use reading::Reading;
pub(crate) use usage_stripped::strips_usage;
pub use usage_stripped::UsageStripped;

/// One metered request. Records exactly once: when its [`TapBody`] sees the answer end or
/// fail, through [`Meter::fail`] when the backend never answered, or on drop as
/// `client_aborted` (the client went away before the answer ended).
pub struct Meter {
    store: Arc<Store>,
    pub(crate) endpoint: Endpoint,
    /// The normalised `model` label, once the request (or the answer) named one.
    model: Option<String>,
    start: Instant,
    /// Taken by [`Meter::set_model`] (one map lookup) and handed to the store with the record.
    in_flight: Option<InFlight>,
    recorded: bool,
    /// The client label the proxy found (client attribution), if any.
    client: Option<String>,
}

/// The reader of one answer, chosen by endpoint and content type.
pub(crate) enum Reader {
    Native(NdjsonReader),
    OpenAi(OpenAiReader),
    /// No stats in the answer (`/api/embeddings`): a 2xx body read to its end is a success.
    Opaque(Reading),
}

/// A response body that feeds every data chunk to the reader and finishes the meter.
pub struct TapBody<B> {
    inner: B,
    reader: Reader,
    meter: Meter,
    status: StatusCode,
    /// The answer is a stream (NDJSON or SSE): time to first token applies.
    streamed: bool,
    first_content: Option<Instant>,
    /// The inner body said it has no more data (all of a sized body was read).
    all_read: bool,
}

// === impl Meter ===

impl Meter {
    pub fn new(store: Arc<Store>, endpoint: Endpoint, start: Instant) -> Self {
        Meter {
            store,
            endpoint,
            model: None,
            start,
            in_flight: None,
            recorded: false,
            client: None,
        }
    }

    /// Sets the client the request named (a label already bounded and made safe).
    pub(crate) fn set_client(&mut self, client: Option<String>) {
        self.client = client;
    }

    /// Sets the model named by the request body (normalised: a name with a tag is kept as it
    /// is, no copy) and counts the request in flight, which finds the stats it will most
    /// likely be recorded into (one map lookup for the whole request).
    pub(crate) fn set_model(&mut self, model: Option<String>) {
        self.model = model.map(model_label::normalize).filter(|m| !m.is_empty());
        let label = self.model.as_deref().unwrap_or(UNKNOWN_MODEL);
        self.in_flight = Some(self.store.begin(label));
    }

    /// The backend was unreachable or too slow before answering anything.
    pub(crate) fn fail(&mut self, outcome: Outcome) {
        self.record(outcome, None, None);
    }

    /// Records the request: `outcome` says how it ended, `reading` what the answer said.
    fn record(&mut self, outcome: Outcome, reading: Option<&Reading>, ttft: Option<Duration>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        // The request's model, else the answer's (normalised only when it is needed).
        let answer_model;
        let model = match self.model.as_deref() {
            Some(m) => m,
            None => {
                answer_model = reading
                    .and_then(|r| r.model.as_deref())
                    .map(model_label::normalize);
                answer_model
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .unwrap_or(UNKNOWN_MODEL)
            }
        };
        let succeeded = outcome.is_success();
        let empty = Reading::default();
        let r = reading.unwrap_or(&empty);
        let record = Record {
            model,
            endpoint: self.endpoint,
            outcome,
            load_only: r.load_only(),
            usage: r.usage,
            finish_reason: r.finish_reason,
            duration: self.start.elapsed(),
            ttft: if succeeded { ttft } else { None },
            client: self.client.as_deref(),
        };
        match self.in_flight.take() {
            Some(begun) => self.store.finish(begun, &record),
            None => self.store.record(&record),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.record(Outcome::ClientAborted, None, None);
    }
}

// === impl Reader ===

impl Reader {
    /// The reader for an answer of `endpoint` with these headers.
    pub(crate) fn for_answer(endpoint: Endpoint, headers: &HeaderMap) -> Reader {
        match (endpoint.api_family(), endpoint) {
            (_, Endpoint::Embeddings) => Reader::Opaque(Reading::default()),
            (_, Endpoint::Embed) => Reader::Native(NdjsonReader::single_object()),
            (ApiFamily::Native, _) => Reader::Native(NdjsonReader::new()),
            (ApiFamily::Compat, _) if is_event_stream(headers) => {
                Reader::OpenAi(OpenAiReader::stream())
            }
            (ApiFamily::Compat, _) => Reader::OpenAi(OpenAiReader::json()),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        match self {
            Reader::Native(r) => r.feed(chunk),
            Reader::OpenAi(r) => r.feed(chunk),
            Reader::Opaque(_) => {}
        }
    }

    fn reading(&self) -> &Reading {
        match self {
            Reader::Native(r) => r.reading(),
            Reader::OpenAi(r) => r.reading(),
            Reader::Opaque(r) => r,
        }
    }

    /// The body ended: an opaque answer is complete now.
    fn end(&mut self) {
        if let Reader::Opaque(r) = self {
            r.complete = true;
        }
    }
}

/// Whether the answer is an SSE stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// Whether the answer is a stream of either kind (time to first token applies).
fn is_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"text/event-stream") || v.starts_with(b"application/x-ndjson")
    })
}

// === impl TapBody ===

impl<B> TapBody<B> {
    pub fn new(inner: B, meter: Meter, status: StatusCode, headers: &HeaderMap) -> Self {
        let streamed = is_stream(headers);
        TapBody {
            inner,
            reader: Reader::for_answer(meter.endpoint, headers),
            meter,
            status,
            streamed,
            first_content: None,
            all_read: false,
        }
    }

    /// How the answer ended, from what was read; `failure` is `None` for a clean end of body.
    fn finish(&mut self, failure: Option<Outcome>) {
        let reading = self.reader.reading();
        let outcome = match failure {
            Some(s) => s,
            None if !self.status.is_success() => Outcome::Http(self.status.as_u16()),
            None if !reading.succeeded() => Outcome::StreamError,
            None => Outcome::Http(self.status.as_u16()),
        };
        let ttft = match (self.streamed, self.first_content) {
            (true, Some(at)) => Some(at.duration_since(self.meter.start)),
            _ => None,
        };
        self.meter.record(outcome, Some(reading), ttft);
    }
}

impl<B: Body> TapBody<B> {
    /// Feeds one chunk of the answer to the reader and notes when content first came. The
    /// answer's last chunk (a sized body read whole) records the request now, before it is
    /// handed on, so the record never lags the client's last byte (nor depends on whether
    /// the server polls once more or drops the body).
    fn observe(&mut self, data: &[u8]) {
        self.reader.feed(data);
        self.all_read = self.inner.is_end_stream();
        if self.first_content.is_none() && self.reader.reading().content_seen {
            self.first_content = Some(Instant::now());
        }
        if self.all_read {
            self.end();
        }
    }

    /// The answer ended cleanly: recorded as what was read says (once: see [`Meter`]).
    fn end(&mut self) {
        self.reader.end();
        self.finish(None);
    }
}

impl<B> Body for TapBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    /// Every frame is handed on as it came; the meter records at the end, on an error, or
    /// (see [`Drop`]) when the client goes away first.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.observe(data);
                }
            }
            Some(Err(e)) => {
                let outcome = if e.is::<IdleTimeout>() {
                    Outcome::Timeout
                } else {
                    Outcome::StreamError
                };
                this.finish(Some(outcome));
            }
            None => this.end(),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end before the end was seen: the meter finishes on the last frame
        // (a body that says so) or on `None`.
        self.meter.recorded && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TapBody<B> {
    fn drop(&mut self) {
        // Dropped before its end was polled: the client went away, unless the answer was
        // already whole (every byte of a sized body, or the final object, passed through).
        if self.reader.reading().succeeded() || self.all_read {
            self.finish(None);
        } else {
            self.finish(Some(Outcome::ClientAborted));
        }
    }
}

#[cfg(test)]
mod tests;
