//! Body layers of the proxy: the request body replayed after the model was sniffed from its
//! start, and the idle timeout on the backend's answer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub use crate::error::BoxError;
pub(crate) use crate::error::IdleTimeout;

/// The request body sent upstream: frames already read (to find the model), then the rest of
/// the client's body, streamed.
pub(crate) struct UpstreamBody<B = hyper::body::Incoming> {
    head: VecDeque<Frame<Bytes>>,
    head_len: u64,
    /// `None`: nothing after `head` (the agent's own requests).
    rest: Option<B>,
    /// Kept for requests whose answer wait is bounded by `timeout` (the pass-through ones).
    progress: Option<Arc<UploadProgress>>,
}

/// The client's request body failed (it hung up in the middle of its upload): told apart
/// from the backend's failures in the upstream error's chain.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body broke off: {0}")]
pub(crate) struct ClientBodyError(#[source] pub(crate) BoxError);

/// When the request body last moved upstream (a frame taken by the backend connection, or its
/// end): the wait for a non-inference answer starts again from there, so an upload slower than
/// `timeout` is not cut while a backend that stops reading still is.
#[derive(Debug)]
pub(crate) struct UploadProgress {
    base: Instant,
    /// Nanoseconds after `base` of the last move, plus one (0 = never moved).
    last: AtomicU64,
}

impl Default for UploadProgress {
    fn default() -> Self {
        UploadProgress {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl UploadProgress {
    pub(crate) fn last(&self) -> Option<Instant> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }

    fn touch(&self) {
        let n = self.base.elapsed().as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        self.last.store(n + 1, Ordering::Relaxed);
    }
}

/// A body that fails with [`IdleTimeout`] when the inner body yields nothing for `timeout`.
pub(crate) struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    /// Allocated on the first wait only: answers that arrive at once never arm a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    /// When the inner body last yielded, since the timer exists. The timer is not moved on
    /// every frame (a timer-wheel update per streamed line): when it fires, it is moved to
    /// `last + timeout` if that is still ahead, and fails the body only if it is not.
    last: Option<Instant>,
}

// === impl UpstreamBody ===

impl<B> UpstreamBody<B> {
    pub(crate) fn new(head: VecDeque<Frame<Bytes>>, rest: B) -> Self {
        let head_len = head
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        UpstreamBody {
            head,
            head_len,
            rest: Some(rest),
            progress: None,
        }
    }

    /// The client's body as it is.
    pub(crate) fn plain(rest: B) -> Self {
        UpstreamBody {
            head: VecDeque::new(),
            head_len: 0,
            rest: Some(rest),
            progress: Some(Arc::default()),
        }
    }

    /// No body (the agent's own requests).
    pub(crate) fn empty() -> Self {
        UpstreamBody {
            head: VecDeque::new(),
            head_len: 0,
            rest: None,
            progress: None,
        }
    }

    /// Shared record of the body's progress upstream.
    pub(crate) fn progress(&self) -> Option<Arc<UploadProgress>> {
        self.progress.clone()
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.head.pop_front() {
            if let Some(d) = frame.data_ref() {
                self.head_len -= d.len() as u64;
            }
            if let Some(p) = &self.progress {
                p.touch();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(rest).poll_frame(cx);
        if polled.is_ready() {
            if let Some(p) = &self.progress {
                p.touch();
            }
        }
        polled.map(|f| f.map(|r| r.map_err(|e| ClientBodyError(e.into()))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        // Keep an exact length exact, so the backend gets Content-Length as the client sent it.
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + self.head_len);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.head_len);
        }
        hint
    }
}

// === impl IdleBody ===

impl<B> IdleBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        IdleBody {
            inner,
            timeout,
            sleep: None,
            last: None,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if this.sleep.is_some() {
                this.last = Some(Instant::now());
            }
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match this.last.take().map(|t| t + timeout) {
                Some(deadline) if deadline > Instant::now() => sleep.as_mut().reset(deadline),
                _ => return Poll::Ready(Some(Err(IdleTimeout(timeout).into()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn replays_head_then_rest_with_exact_length() {
        let head = VecDeque::from([Frame::data(Bytes::from_static(b"{\"model\":"))]);
        let body = UpstreamBody::new(
            head,
            http_body_util::Full::new(Bytes::from_static(b"\"m\"}")),
        );
        assert_eq!(body.size_hint().exact(), Some(13));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"model\":\"m\"}");
    }

    /// A body that never yields.
    struct Never;
    impl Body for Never {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    /// A body fed by a channel: each message is one frame.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);
    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gaps_shorter_than_the_timeout_never_fail_and_the_first_longer_one_does() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                tx.send(Bytes::from_static(b"line\n")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3600)).await; // stalls, sender kept
            drop(tx);
        });
        let mut body = IdleBody::new(Fed(rx), Duration::from_secs(30));
        let start = Instant::now();
        for i in 1..=5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "line\n");
            assert_eq!(start.elapsed(), Duration::from_secs(20 * i));
        }
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<IdleTimeout>());
        // exactly `timeout` after the last frame, though the timer was armed at the first wait
        assert_eq!(start.elapsed(), Duration::from_secs(100 + 30));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_body_fails_after_timeout() {
        let mut body = IdleBody::new(Never, Duration::from_secs(30));
        let start = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<IdleTimeout>());
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
