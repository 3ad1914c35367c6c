//! HTTP plumbing: the response body ([`FakeBody`]), content types, whole responses in the native,
//! OpenAI and gin shapes, and reading fields out of a bound request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::{header, Response, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::gojson::{bind, BindErr, J};
use super::BoxError;

// ---------------------------------------------------------------------------------------------
// Body
// ---------------------------------------------------------------------------------------------

/// What the stream driver tells the body (see `stream.rs`).
pub(super) enum Msg {
    /// One body frame.
    Data(Bytes),
    /// Send the headers now, without data (`[[hang]]`).
    Start,
    /// Abort the connection.
    Cut,
    /// An error before anything was written: a normal error response.
    EarlyError(StatusCode, &'static str, Bytes),
}

/// Response body of the fake: either a complete buffer, or frames from a channel (streams).
pub struct FakeBody(pub(super) BodyKind);

pub(super) enum BodyKind {
    Full(Option<Bytes>),
    Chan {
        first: Option<Bytes>,
        rx: mpsc::Receiver<Msg>,
    },
}

impl FakeBody {
    fn full(b: impl Into<Bytes>) -> FakeBody {
        let b: Bytes = b.into();
        FakeBody(BodyKind::Full(if b.is_empty() { None } else { Some(b) }))
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Chan { first, rx } => {
                if let Some(b) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                loop {
                    return match rx.poll_recv(cx) {
                        Poll::Ready(Some(Msg::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                        Poll::Ready(Some(Msg::Start)) => continue,
                        Poll::Ready(Some(Msg::Cut)) | Poll::Ready(Some(Msg::EarlyError(..))) => {
                            Poll::Ready(Some(Err("fake ollama: connection cut".into())))
                        }
                        Poll::Ready(None) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, BodyKind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            BodyKind::Full(None) => SizeHint::with_exact(0),
            BodyKind::Chan { .. } => SizeHint::default(),
        }
    }
}

pub(super) type Resp = Response<FakeBody>;

pub(super) const CT_JSON: &str = "application/json; charset=utf-8";
pub(super) const CT_JSON_BARE: &str = "application/json";
pub(super) const CT_NDJSON: &str = "application/x-ndjson";
pub(super) const CT_SSE: &str = "text/event-stream";
pub(super) const CT_TEXT: &str = "text/plain; charset=utf-8";
pub(super) const CT_GIN_TEXT: &str = "text/plain";

/// A complete response; no `Content-Type` if `ct` is `None`.
pub(super) fn full(status: StatusCode, ct: Option<&'static str>, body: impl Into<Bytes>) -> Resp {
    let mut b = Response::builder().status(status);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(FakeBody::full(body)).expect("response")
}

/// A native JSON reply (gin's `c.JSON`: no trailing newline).
pub(super) fn json_ok(j: &J) -> Resp {
    full(StatusCode::OK, Some(CT_JSON), j.go())
}

/// Native error: `{"error":"msg"}`, `application/json; charset=utf-8`.
pub(super) fn native_err(status: StatusCode, msg: &str) -> Resp {
    full(status, Some(CT_JSON), obj! {"error" => msg}.go())
}

/// The OpenAI error object: `type` from the status.
pub(super) fn oai_error_json(status: StatusCode, msg: &str) -> J {
    let t = match status {
        StatusCode::BAD_REQUEST => "invalid_request_error",
        StatusCode::NOT_FOUND => "not_found_error",
        _ => "api_error",
    };
    obj! {"error" => obj!{"message" => msg, "type" => t, "param" => J::Null, "code" => J::Null}}
}

/// OpenAI-shape error. `from_middleware`: written by the middleware itself (gin's content type,
/// no newline) rather than converted from the handler's error (json.Encoder: bare type, newline).
pub(super) fn oai_err(status: StatusCode, msg: &str, from_middleware: bool) -> Resp {
    let j = oai_error_json(status, msg);
    if from_middleware {
        full(status, Some(CT_JSON), j.go())
    } else {
        full(status, Some(CT_JSON_BARE), j.go() + "\n")
    }
}

/// /v1 success reply (json.Encoder: trailing newline, bare `application/json`).
pub(super) fn oai_ok(j: &J) -> Resp {
    full(StatusCode::OK, Some(CT_JSON_BARE), j.go() + "\n")
}

/// gin's page for an unknown route.
pub(super) fn not_found() -> Resp {
    full(
        StatusCode::NOT_FOUND,
        Some(CT_GIN_TEXT),
        "404 page not found",
    )
}

/// gin's page for a known route with another method (`HandleMethodNotAllowed`).
pub(super) fn method_not_allowed() -> Resp {
    full(
        StatusCode::METHOD_NOT_ALLOWED,
        Some(CT_GIN_TEXT),
        "405 method not allowed",
    )
}

/// One NDJSON line: `j` and `\n`.
pub(super) fn ndjson(j: &J) -> Bytes {
    Bytes::from(j.go() + "\n")
}

/// `{"error":"msg"}` without a newline.
pub(super) fn native_err_body(msg: &str) -> Bytes {
    Bytes::from(obj! {"error" => msg}.go())
}

/// The error shape of a handler: native (`{"error":"msg"}`) or OpenAI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Shape {
    Native,
    OpenAi,
}

impl Shape {
    /// An error reply in this shape. `from_middleware` only matters for OpenAI (see [`oai_err`]).
    pub(super) fn err(self, status: StatusCode, msg: &str, from_middleware: bool) -> Resp {
        match self {
            Shape::Native => native_err(status, msg),
            Shape::OpenAi => oai_err(status, msg, from_middleware),
        }
    }

    /// `model` when it names a known model; otherwise Ollama's 400 `model is required` or 404
    /// `model '<name>' not found`, in this shape.
    pub(super) fn known_model(self, model: &str) -> Result<String, Box<Resp>> {
        if model.is_empty() {
            return self.fail(StatusCode::BAD_REQUEST, "model is required", false);
        }
        if !super::is_known_model(model) {
            let msg = format!("model '{model}' not found");
            return self.fail(StatusCode::NOT_FOUND, &msg, false);
        }
        Ok(model.to_string())
    }

    /// [`Shape::err`] as the `Err` of a handler's request check.
    pub(super) fn fail<T>(
        self,
        status: StatusCode,
        msg: &str,
        from_middleware: bool,
    ) -> Result<T, Box<Resp>> {
        Err(Box::new(self.err(status, msg, from_middleware)))
    }

    /// [`bind`], with a failure turned into this shape's 400: an empty body is `missing request
    /// body` from a native handler, `EOF` from the OpenAI middleware.
    pub(super) fn bind(
        self,
        body: &[u8],
        go_type: &str,
        fields: &[(&str, &str)],
    ) -> Result<Map<String, Value>, Box<Resp>> {
        bind(body, go_type, fields).map_err(|e| {
            Box::new(match (self, e) {
                (Shape::OpenAi, BindErr::Missing) => self.err(StatusCode::BAD_REQUEST, "EOF", true),
                (Shape::Native, BindErr::Missing) => {
                    self.err(StatusCode::BAD_REQUEST, "missing request body", false)
                }
                (_, BindErr::Msg(m)) => self.err(StatusCode::BAD_REQUEST, &m, true),
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Request fields
// ---------------------------------------------------------------------------------------------

/// String field `k`, or "" if absent or not a string.
pub(super) fn get_str<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Model name from `model`, or the deprecated `name`.
pub(super) fn model_field(m: &Map<String, Value>) -> &str {
    let s = get_str(m, "model");
    if s.is_empty() {
        get_str(m, "name")
    } else {
        s
    }
}

/// Whether `keep_alive` is 0 (a number, or a Go duration string such as `"0s"`).
pub(super) fn keep_alive_zero(m: &Map<String, Value>) -> bool {
    match m.get("keep_alive") {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => {
            let num = s.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == 'µ');
            !num.is_empty() && num.parse::<f64>().ok() == Some(0.0)
        }
        _ => false,
    }
}

/// `options.num_predict` of a native request.
pub(super) fn num_predict(m: &Map<String, Value>) -> Option<i64> {
    m.get("options")
        .and_then(|o| o.get("num_predict"))
        .and_then(Value::as_i64)
}
