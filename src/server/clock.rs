//! The two clocks of a client connection (`client_header_timeout`, `keepalive_timeout`), which
//! run only while no request is being served on it.
//!
//! [`Tracked`] wraps the port's service: a request counts as being served from the moment
//! hyper hands its head to the service until hyper drops its answer's body (the answer
//! written, or the connection gone), so an upload, a generation or a slow reader is never
//! timed here (`timeout` governs the gaps of an answer). [`Watched`] wraps the socket and
//! keeps the clock: hyper always reads when it waits for a request head, so the clock is
//! checked on those reads, and a read past the deadline fails, which closes the connection.
//!
//! * a new connection has `client_header_timeout` for its whole first head;
//! * after an answer, the connection may idle `keepalive_timeout`, and from the next request's
//!   first byte it has `client_header_timeout` for the head. The answer's last bytes (hyper
//!   may have them buffered after the body is done) still count as serving: no clock runs
//!   while a write waits for the client to read, and the idle clock restarts on each write.
//!
//! A client cut off in the middle of a head reads `408 Request Timeout` first; an idle one is
//! closed without a word, as nginx does (a `408` there could be taken for the answer to a
//! request sent at the same moment).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::http::{Request, Response};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::PortService;
use crate::config::Limits;
use crate::error::BoxError;
use crate::proxy::ProxyBody;

/// What a client cut off mid-head reads before the close.
const TIMED_OUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The requests of one connection: started (head handed to the service) and finished (answer
/// body dropped). Equal counts: no request is being served.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    started: AtomicU64,
    finished: AtomicU64,
    /// The connection's task, when a read was left pending while a request was served: woken
    /// when the request finishes, so that the clock starts (hyper does not read again on its
    /// own once it goes idle, when a read is already pending).
    reader: Mutex<Option<Waker>>,
}

/// Where a connection is between requests, as its socket sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a head; `partial` once a byte of it came.
    Head { partial: bool },
    /// After an answer, no byte of the next request yet.
    Idle,
    /// A request is being served: no clock.
    Busy,
}

/// A client socket that fails its reads once the clock of its phase has run out.
pub(crate) struct Watched {
    tcp: TcpStream,
    activity: Arc<Activity>,
    limits: Limits,
    phase: Phase,
    /// `Activity::finished` when the phase was last set: a change means an answer ended.
    seen: u64,
    deadline: Pin<Box<Sleep>>,
    /// The last write waited for the client to read: the answer is still being delivered.
    write_blocked: bool,
}

// === impl Watched ===

impl Watched {
    /// A new connection: the head clock starts now.
    pub(crate) fn new(tcp: TcpStream, activity: Arc<Activity>, limits: Limits) -> Self {
        let deadline = Box::pin(tokio::time::sleep(limits.client_header_timeout));
        Watched {
            tcp,
            activity,
            limits,
            phase: Phase::Head { partial: false },
            seen: 0,
            deadline,
            write_blocked: false,
        }
    }

    /// Brings the phase up to date with the requests before a read.
    fn update_phase(&mut self) {
        let finished = self.activity.finished.load(Relaxed);
        if self.activity.started.load(Relaxed) != finished {
            self.phase = Phase::Busy;
        } else if self.phase == Phase::Busy || finished != self.seen {
            self.seen = finished;
            self.idle_from_now();
        }
    }

    fn idle_from_now(&mut self) {
        self.phase = Phase::Idle;
        let at = Instant::now() + self.limits.keepalive_timeout;
        self.deadline.as_mut().reset(at);
    }

    /// After a write: the last bytes of an answer to a slow reader keep it from idling.
    fn wrote(&mut self, written: &Poll<io::Result<usize>>) {
        self.write_blocked = written.is_pending();
        if self.phase == Phase::Idle && matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.idle_from_now();
        }
    }

    /// The clock ran out: the error that ends the connection, after a best-effort `408` to a
    /// client that had sent part of a head.
    fn expire(&mut self) -> io::Error {
        if self.phase == (Phase::Head { partial: true }) {
            let _ = self.tcp.try_write(TIMED_OUT);
        }
        io::Error::new(io::ErrorKind::TimedOut, "client connection timed out")
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.update_phase();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                match this.phase {
                    Phase::Idle => {
                        this.phase = Phase::Head { partial: true };
                        let at = Instant::now() + this.limits.client_header_timeout;
                        this.deadline.as_mut().reset(at);
                    }
                    Phase::Head { .. } => this.phase = Phase::Head { partial: true },
                    Phase::Busy => {}
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase == Phase::Busy => {
                let mut reader = this.activity.reader.lock();
                if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *reader = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            // An answer's last bytes wait for the client to read: no clock until they are out
            // (the socket's write readiness wakes the connection).
            Poll::Pending if this.write_blocked => Poll::Pending,
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(this.expire())),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The port's service, counting the requests of one connection in its [`Activity`].
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

/// Marks a request finished when dropped: with its answer's body, or with the service's
/// future if the answer never came.
struct Finish(Arc<Activity>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Relaxed);
        if let Some(reader) = self.0.reader.lock().take() {
            reader.wake();
        }
    }
}

impl<S: PortService> Service<Request<Incoming>> for Tracked<S> {
    type Response = Response<Guarded>;
    type Error = Infallible;
    type Future = Track<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.started.fetch_add(1, Relaxed);
        Track {
            inner: self.inner.call(req),
            finish: Some(Finish(self.activity.clone())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future, handing its [`Finish`] on to the answer's body.
    pub(crate) struct Track<F> {
        #[pin]
        inner: F,
        finish: Option<Finish>,
    }
}

impl<F> Future for Track<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<Guarded>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(res) = std::task::ready!(this.inner.poll(cx));
        let finish = this.finish.take();
        Poll::Ready(Ok(res.map(|body| Guarded {
            body,
            _finish: finish,
        })))
    }
}

/// An answer's body that marks its request finished when hyper drops it.
pub(crate) struct Guarded {
    body: ProxyBody,
    _finish: Option<Finish>,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
