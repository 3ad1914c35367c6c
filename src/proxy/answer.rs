//! The body of every answer on the proxy port: the backend's answer (tapped or not) or one of
//! the agent's own small answers. An enum, so that no answer is boxed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{Answer, BoxError, IdleBody};
use crate::tap::TapBody;

/// An answer body on the proxy port. The tapped variant carries the dialect readers (~2.5 KB)
/// inline: it is moved a few times per request, which costs less than boxing it would.
#[allow(clippy::large_enum_variant)]
pub enum ProxyBody {
    /// An inference answer, read by the tap on its way to the client.
    Tapped(TapBody<IdleBody<Answer>>),
    /// Any other backend answer, passed through.
    Plain(IdleBody<Answer>),
    /// A whole body the agent wrote (an error, `/metrics`, `/health`); `None` once sent.
    Full(Option<Bytes>),
}

// === impl ProxyBody ===

impl ProxyBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
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
            ProxyBody::Plain(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Tapped(b) => b.is_end_stream(),
            ProxyBody::Plain(b) => b.is_end_stream(),
            ProxyBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Tapped(b) => b.size_hint(),
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
