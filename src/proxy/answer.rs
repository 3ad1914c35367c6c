//! Answer bodies: [`Answer`], the backend's answer body driving the connection it arrives on,
//! and [`ProxyBody`], the body of every answer on the proxy port (the backend's, tapped or
//! not, or one of the agent's own small answers; an enum, so that no answer is boxed).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream::{Conn, Pool};
use super::{BoxError, IdleBody};
use crate::tap::{TapBody, UsageStripped};

/// Bytes gathered into one frame at most, from frames that have already arrived.
const GATHER_LIMIT: usize = 64 * 1024;
/// The body of a backend answer, with the connection it arrives on: polling the body drives
/// the connection; the connection goes back to the pool when the body has ended cleanly, and
/// is closed when the body is dropped before (the backend sees the client go away).
pub(crate) struct Answer {
    body: Incoming,
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// The body failed after data the server may still hold unwritten: the failure is handed
    /// on once a `Pending` has let the server write that data (`true`: it has).
    failed: Option<(hyper::Error, bool)>,
    /// The last poll handed on data (the server may not have written it yet).
    unflushed: bool,
}

/// An answer body on the proxy port. The tapped variant carries the dialect readers (~2.5 KB)
/// inline: it is moved a few times per request, which costs less than boxing it would.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ProxyBody {
    /// An inference answer, read by the tap on its way to the client.
    Tapped(TapBody<IdleBody<Answer>>),
    /// The same, less the usage event the agent's `include_usage` caused.
    Stripped(UsageStripped<TapBody<IdleBody<Answer>>>),
    /// Any other backend answer, passed through.
    Plain(IdleBody<Answer>),
    /// A whole body the agent wrote (an error, `/metrics`, `/health`); `None` once sent.
    Full(Option<Bytes>),
}

// === impl Answer ===

impl Answer {
    pub(super) fn new(body: Incoming, conn: Conn, pool: Arc<Pool>) -> Self {
        Answer {
            body,
            conn: Some(conn),
            pool,
            failed: None,
            unflushed: false,
        }
    }

    /// `Pending` now (woken at once, so the server writes what it holds), `e` at the next poll.
    fn pending_then<T>(&mut self, e: hyper::Error, cx: &mut Context<'_>) -> Poll<T> {
        self.failed = Some((e, true));
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The body has ended cleanly: the connection may serve another request.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn, cx);
        }
    }

    /// One poll of the body, letting the connection read what has arrived when the body has
    /// nothing yet (the connection hands at most one frame to the body per poll).
    fn poll_once(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_ready() {
            return polled;
        }
        let Some(conn) = self.conn.as_mut() else {
            return polled;
        };
        if Pin::new(&mut conn.conn).poll(cx).is_ready() {
            self.conn = None;
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = hyper::Error;

    /// Every frame that has already arrived, as one frame of at most [`GATHER_LIMIT`] bytes:
    /// what a burst of lines brings is written to the client at once, and nothing waits for
    /// more than is there.
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // hyper's server discards what it has not written yet when a body fails, and it writes
        // only when the body is `Pending`: a failure that follows data waits for one.
        match this.failed.take() {
            Some((e, true)) => return Poll::Ready(Some(Err(e))),
            Some((e, false)) => return this.pending_then(e, cx),
            None => {}
        }
        let Poll::Ready(polled) = this.poll_once(cx) else {
            this.unflushed = false;
            return Poll::Pending;
        };
        let first = match polled {
            Some(Ok(frame)) => frame,
            None => {
                this.release(cx);
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                this.conn = None;
                if this.unflushed {
                    return this.pending_then(e, cx);
                }
                return Poll::Ready(Some(Err(e)));
            }
        };
        let mut first = match first.into_data() {
            Ok(data) => data,
            Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
        };
        let mut gathered: Option<BytesMut> = None;
        while !this.body.is_end_stream() {
            let len = gathered.as_ref().map_or(first.len(), BytesMut::len);
            if len >= GATHER_LIMIT {
                break;
            }
            match this.poll_once(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped, as hyper's server drops them on HTTP/1.
                    if let Ok(data) = frame.into_data() {
                        gathered
                            .get_or_insert_with(|| {
                                let mut buf = BytesMut::with_capacity(first.len() + data.len());
                                buf.extend_from_slice(&first);
                                buf
                            })
                            .extend_from_slice(&data);
                    }
                }
                // The end is seen at the next poll.
                Poll::Ready(None) | Poll::Pending => break,
                Poll::Ready(Some(Err(e))) => {
                    // What came before the failure goes out first.
                    this.conn = None;
                    this.failed = Some((e, false));
                    break;
                }
            }
        }
        if let Some(buf) = gathered {
            first = buf.freeze();
        }
        if this.body.is_end_stream() {
            this.release(cx);
        }
        this.unflushed = true;
        Poll::Ready(Some(Ok(Frame::data(first))))
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// === impl ProxyBody ===

impl ProxyBody {
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ProxyBody::Full((!data.is_empty()).then_some(data))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Tapped(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Stripped(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Plain(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Tapped(b) => b.is_end_stream(),
            ProxyBody::Stripped(b) => b.is_end_stream(),
            ProxyBody::Plain(b) => b.is_end_stream(),
            ProxyBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Tapped(b) => b.size_hint(),
            ProxyBody::Stripped(b) => b.size_hint(),
            ProxyBody::Plain(b) => b.size_hint(),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_full_body_is_one_frame_of_exact_length() {
        let body = ProxyBody::full("{\"error\":\"x\"}");
        assert_eq!(body.size_hint().exact(), Some(13));
        assert!(!body.is_end_stream());
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"{\"error\":\"x\"}");
        assert!(ProxyBody::full("").is_end_stream());
    }
}
