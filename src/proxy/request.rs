//! The request side of a metered request: read the start of the body to learn its `model`
//! (plain or zstd-compressed) and, with `client_from_body`, its `user`, and optionally add
//! `stream_options.include_usage`.

use std::collections::VecDeque;

use axum::http::{header, HeaderMap, HeaderValue};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::tap::include_usage;
use crate::tap::sniff::{self, ModelSniffer};
use crate::vocab::Endpoint;

use super::UpstreamBody;

/// How much of an inference request body is read, at most, before the request is sent on.
/// The rest is streamed; the answer's own `model` is the fallback.
pub(crate) const PEEK_LIMIT: usize = 256 * 1024;

/// The start of a request body, read before forwarding, and what it said.
pub(crate) struct Peeked<B> {
    pub(crate) head: VecDeque<Frame<Bytes>>,
    pub(crate) rest: B,
    pub(crate) model: Option<String>,
    /// The top-level `user`, when it was asked for and found.
    pub(crate) user: Option<String>,
    /// The whole body is in `head`.
    pub(crate) whole: bool,
}

// === impl Peeked ===

impl<B: Body<Data = Bytes> + Unpin> Peeked<B> {
    /// Reads frames until the model is known, the body ends, or [`PEEK_LIMIT`]. A zstd body is
    /// read up to the limit and its start decompressed; `want_whole` keeps reading to the end
    /// (within the limit) so the body can be rewritten; `want_user` until the top-level `user`
    /// is read too or the object ends (within the limit). Without it, not a byte more is read.
    pub(crate) async fn read(
        mut body: B,
        zstd: bool,
        want_whole: bool,
        want_user: bool,
    ) -> Result<Peeked<B>, B::Error> {
        let new_sniffer = || {
            if want_user {
                ModelSniffer::with_user()
            } else {
                ModelSniffer::new()
            }
        };
        let mut sniffer = new_sniffer();
        let mut head = VecDeque::new();
        let mut read = 0;
        let mut whole = false;
        while read < PEEK_LIMIT && (zstd || want_whole || !sniffer.finished()) {
            match body.frame().await {
                None => {
                    whole = true;
                    break;
                }
                Some(frame) => {
                    let frame = frame?;
                    if let Some(data) = frame.data_ref() {
                        if !zstd {
                            sniffer.feed(data);
                        }
                        read += data.len();
                    }
                    head.push_back(frame);
                }
            }
        }
        whole |= body.is_end_stream();
        if zstd {
            sniffer = sniff::sniff_zstd(&concat(&head), new_sniffer());
        }
        let (model, user) = sniffer.into_found();
        Ok(Peeked {
            head,
            rest: body,
            model,
            user,
            whole,
        })
    }

    /// With the `include_usage` option: adds `stream_options.include_usage` to a whole,
    /// uncompressed, streamed `/v1/chat/completions` body that lacks `stream_options`, and
    /// fixes `Content-Length`. Returns whether the body was changed.
    pub(crate) fn add_include_usage(
        &mut self,
        endpoint: Endpoint,
        headers: &mut HeaderMap,
    ) -> bool {
        if endpoint != Endpoint::OpenAiChat
            || !self.whole
            || headers.contains_key(header::CONTENT_ENCODING)
        {
            return false;
        }
        let Some(body) = include_usage::inject(&concat(&self.head)) else {
            return false;
        };
        if headers.contains_key(header::CONTENT_LENGTH) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        self.head = VecDeque::from([Frame::data(Bytes::from(body))]);
        true
    }

    pub(crate) fn into_body(self) -> UpstreamBody<B> {
        UpstreamBody::new(self.head, self.rest)
    }
}

/// Whether a request body is zstd-compressed (Ollama accepts that on `/v1/*`).
pub(crate) fn is_zstd(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"zstd"))
}

/// The data of `frames` as one buffer (one copy; only for the rare rewrite/zstd paths).
fn concat(frames: &VecDeque<Frame<Bytes>>) -> Bytes {
    let mut out = BytesMut::new();
    for data in frames.iter().filter_map(Frame::data_ref) {
        out.extend_from_slice(data);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    type Body = Full<Bytes>;

    #[tokio::test]
    async fn finds_the_model_and_keeps_every_byte() {
        let body = r#"{"messages":[{"role":"user","content":"hi"}],"model":"m","stream":true}"#;
        let p = Peeked::read(Body::from(body), false, false, false)
            .await
            .unwrap();
        assert_eq!(p.model.as_deref(), Some("m"));
        let all = p.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], body.as_bytes());
    }

    #[tokio::test]
    async fn zstd_bodies_are_sniffed_decompressed_and_forwarded_compressed() {
        let body = br#"{"model":"qwen2.5:0.5b","messages":[]}"#;
        let z = ruzstd::encoding::compress_to_vec(
            &body[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let p = Peeked::read(Body::from(z.clone()), true, false, false)
            .await
            .unwrap();
        assert_eq!(p.model.as_deref(), Some("qwen2.5:0.5b"));
        let all = p.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], &z[..]);
    }

    /// A body that arrives as these frames, and counts how many were read.
    struct Frames(VecDeque<Bytes>, usize);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let next = self.0.pop_front().map(|b| Ok(Frame::data(b)));
            self.1 += usize::from(next.is_some());
            std::task::Poll::Ready(next)
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn frames(parts: &[&'static str]) -> Frames {
        Frames(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
            0,
        )
    }

    #[tokio::test]
    async fn the_user_is_read_in_the_same_peek_only_when_asked_for() {
        let parts = [
            r#"{"model":"m","#,
            r#""prompt":"hi","#,
            r#""user":"alice"}"#,
        ];
        // not asked: the peek stops at the model's frame
        let p = Peeked::read(frames(&parts), false, false, false)
            .await
            .unwrap();
        assert_eq!((p.model.as_deref(), p.user.as_deref()), (Some("m"), None));
        assert_eq!(
            (p.head.len(), p.rest.1),
            (1, 1),
            "not a frame more than the model's"
        );
        // asked: until the user's frame, and every byte still forwarded
        let p = Peeked::read(frames(&parts), false, false, true)
            .await
            .unwrap();
        assert_eq!(
            (p.model.as_deref(), p.user.as_deref()),
            (Some("m"), Some("alice"))
        );
        assert_eq!(p.head.len(), 3);
        let all = p.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], parts.concat().as_bytes());
        // asked, but the body names none: read to the end of the object, not further
        let parts = [r#"{"model":"m","#, r#""prompt":"hi"}"#, "\n"];
        let p = Peeked::read(frames(&parts), false, false, true)
            .await
            .unwrap();
        assert_eq!(
            (p.model.as_deref(), p.user.as_deref(), p.head.len()),
            (Some("m"), None, 2)
        );
    }

    /// `body` read whole, offered to `add_include_usage` for `endpoint` with a `Content-Length`
    /// and the `extra` headers: whether it changed, the body forwarded, and the headers after.
    async fn offered(
        endpoint: Endpoint,
        body: &'static str,
        extra: &[(header::HeaderName, &'static str)],
    ) -> (bool, Bytes, HeaderMap) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        for (name, value) in extra {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let mut p = Peeked::read(Body::from(body), false, true, false)
            .await
            .unwrap();
        assert!(p.whole, "{body}");
        let changed = p.add_include_usage(endpoint, &mut headers);
        let all = p.into_body().collect().await.unwrap().to_bytes();
        (changed, all, headers)
    }

    #[tokio::test]
    async fn include_usage_is_added_only_to_uncompressed_streamed_chat_bodies() {
        const STREAMED: &str = r#"{"model":"m","stream":true,"messages":[]}"#;
        let (changed, all, headers) = offered(Endpoint::OpenAiChat, STREAMED, &[]).await;
        let want =
            r#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}"#;
        assert!(changed);
        assert_eq!(&all[..], want.as_bytes());
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            want.len().to_string().as_str()
        );

        let not_streamed = r#"{"model":"m","stream":false,"messages":[]}"#;
        let gzip = [(header::CONTENT_ENCODING, "gzip")];
        for (endpoint, body, extra) in [
            (Endpoint::OpenAiCompletions, STREAMED, &[][..]),
            (Endpoint::Chat, STREAMED, &[][..]),
            (Endpoint::OpenAiChat, not_streamed, &[][..]),
            (Endpoint::OpenAiChat, STREAMED, &gzip[..]),
        ] {
            let (changed, all, headers) = offered(endpoint, body, extra).await;
            assert!(!changed, "{endpoint:?} {body} {extra:?}");
            assert_eq!(&all[..], body.as_bytes(), "{endpoint:?} {body} {extra:?}");
            assert_eq!(
                headers[header::CONTENT_LENGTH],
                body.len().to_string().as_str()
            );
        }
    }
}
