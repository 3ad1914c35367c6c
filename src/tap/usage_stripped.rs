//! The answer less the usage event the agent caused: when the proxy added
//! `stream_options.include_usage` to a request (the `include_usage` option), the backend's
//! stream carries one event the client did not ask for (`"choices":[]` with the usage). This
//! body layer, over the tapped answer, removes it with a [`UsageStripper`]; the tap under it
//! has read the usage already. The proxy chooses it, for those answers only.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::include_usage::UsageStripper;
use super::is_event_stream;
use crate::error::BoxError;

/// A body that hands on what its [`UsageStripper`] lets through of the inner body's data.
pub struct UsageStripped<B> {
    inner: B,
    stripper: UsageStripper,
    /// The inner body ended and the stripper's last bytes were handed on.
    ended: bool,
}

// === impl UsageStripped ===

impl<B> UsageStripped<B> {
    pub fn new(inner: B) -> Self {
        UsageStripped {
            inner,
            stripper: UsageStripper::new(),
            ended: false,
        }
    }
}

/// Whether an answer with this status and these headers carries the extra event when its
/// request had `include_usage` added (a 2xx SSE stream): what [`UsageStripped`] is for.
pub(crate) fn strips_usage(status: StatusCode, headers: &HeaderMap) -> bool {
    status.is_success() && is_event_stream(headers)
}

impl<B> Body for UsageStripped<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            let Some(polled) = ready!(Pin::new(&mut this.inner).poll_frame(cx)) else {
                this.ended = true;
                let mut rest = Vec::new();
                this.stripper.finish(&mut rest);
                return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(Bytes::from(rest)))));
            };
            let frame = polled?;
            let Some(data) = frame.data_ref() else {
                return Poll::Ready(Some(Ok(frame)));
            };
            let mut out = Vec::with_capacity(data.len());
            this.stripper.filter(data, &mut out);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
            // The whole chunk was held or removed: the next one.
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        // The length changes by what is removed.
        SizeHint::default()
    }
}
