//! What the four generation endpoints (/api/generate, /api/chat, /v1/chat/completions,
//! /v1/completions) have in common: binding and checking the request ([`Gen::parse`]), the answer
//! of the "model" (tokens, done reason, metrics: [`Gen::answer`]), and running that answer as a
//! stream or a whole reply ([`run`]). The dialects (native.rs, openai.rs) only frame it
//! ([`Framing`]).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::directives::{metrics_for, truncate};
use super::http::{get_str, Resp, Shape};
use super::stream::{hold, start_stream, Frames, Whole};
use super::{
    chat_prompt, make_reply_tokens, parse_directives, BoxError, Directives, ExpectedMetrics, Inner,
    DEFAULT_REPLY_TOKENS, MODEL_ERROR,
};

/// A generation endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Api {
    Generate,
    Chat,
    OaiChat,
    OaiCompletion,
}

impl Api {
    fn shape(self) -> Shape {
        match self {
            Api::Generate | Api::Chat => Shape::Native,
            Api::OaiChat | Api::OaiCompletion => Shape::OpenAi,
        }
    }

    /// The Go type the request is bound to, and the fields whose JSON type is checked.
    fn binding(self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        match self {
            Api::Generate => (
                "api.GenerateRequest",
                &[
                    ("model", "string"),
                    ("prompt", "string"),
                    ("stream", "bool"),
                    ("options", "object"),
                ],
            ),
            Api::Chat => (
                "api.ChatRequest",
                &[
                    ("model", "string"),
                    ("messages", "array"),
                    ("stream", "bool"),
                    ("options", "object"),
                ],
            ),
            Api::OaiChat => (
                "openai.ChatCompletionRequest",
                &[
                    ("model", "string"),
                    ("messages", "array"),
                    ("stream", "bool"),
                    ("stream_options", "object"),
                ],
            ),
            Api::OaiCompletion => (
                "openai.CompletionRequest",
                &[
                    ("model", "string"),
                    ("prompt", "string"),
                    ("stream", "bool"),
                    ("stream_options", "object"),
                ],
            ),
        }
    }
}

/// A bound and checked generation request.
pub(super) struct Gen {
    pub(super) api: Api,
    pub(super) req: Map<String, Value>,
    /// `model` as sent (not normalized, as Ollama echoes it).
    pub(super) model: String,
    /// The prompt text: `prompt`, or the [`chat_prompt`] of the messages.
    pub(super) text: String,
    /// Empty prompt or no messages: the handler only loads the model.
    pub(super) load_only: bool,
    /// Native: unless `"stream":false`. /v1: only with `"stream":true`.
    pub(super) stream: bool,
}

impl Gen {
    /// Binds `body` as the endpoint's Go type and checks it; `Err` is the error reply.
    pub(super) fn parse(body: &[u8], api: Api) -> Result<Gen, Box<Resp>> {
        let shape = api.shape();
        let (go_type, fields) = api.binding();
        let req = shape.bind(body, go_type, fields)?;
        let messages: Option<&Vec<Value>> = req.get("messages").and_then(Value::as_array);
        if api == Api::OaiChat && messages.is_none_or(|m| m.is_empty()) {
            return shape.fail(
                StatusCode::BAD_REQUEST,
                "[] is too short - 'messages'",
                true,
            );
        }
        let model = shape.known_model(get_str(&req, "model"))?;
        let (text, load_only) = match api {
            Api::Generate | Api::OaiCompletion => {
                let text = get_str(&req, "prompt").to_string();
                let empty = text.is_empty();
                (text, empty)
            }
            Api::Chat | Api::OaiChat => {
                let contents: Vec<&str> = messages
                    .map(|ms| ms.iter().map(message_text).collect())
                    .unwrap_or_default();
                (
                    chat_prompt(&contents),
                    messages.is_none_or(|m| m.is_empty()),
                )
            }
        };
        let stream = match api.shape() {
            Shape::OpenAi => req.get("stream") == Some(&Value::Bool(true)),
            Shape::Native => req.get("stream") != Some(&Value::Bool(false)),
        };
        Ok(Gen {
            api,
            req,
            model,
            text,
            load_only,
            stream,
        })
    }

    /// The answer to the prompt, `limit` being `num_predict` / `max_tokens`. Takes an id
    /// sequence number.
    pub(super) fn answer(&self, inner: &Inner, limit: Option<i64>) -> Answer {
        let (d, clean) = parse_directives(&self.text);
        let p = clean.split_whitespace().count() as u64;
        let (n, reason) = truncate(d.tokens.unwrap_or(DEFAULT_REPLY_TOKENS), limit);
        Answer {
            tokens: make_reply_tokens(n),
            reason,
            metrics: metrics_for(&d, p, n as u64),
            seq: inner.next_id(),
            d,
        }
    }
}

/// Text of one chat message: `content` as a string, or the `text` parts of an OpenAI content array.
fn message_text(m: &Value) -> &str {
    match m.get("content") {
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => parts
            .iter()
            .find_map(|p| p.get("text").and_then(Value::as_str))
            .unwrap_or(""),
        _ => "",
    }
}

/// What the "model" answers.
pub(super) struct Answer {
    pub(super) d: Directives,
    pub(super) tokens: Vec<String>,
    /// `done_reason` / `finish_reason`.
    pub(super) reason: &'static str,
    pub(super) metrics: ExpectedMetrics,
    /// For the /v1 `id` (`chatcmpl-N`, `cmpl-N`). Every generation takes one, native ones too.
    pub(super) seq: u64,
}

impl Answer {
    /// The prompt and eval token counts as sent (0 when left out).
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.metrics.prompt_eval_count.unwrap_or(0),
            self.metrics.eval_count.unwrap_or(0),
        )
    }

    /// The answer of a request that only loads the model: no tokens, no metrics.
    pub(super) fn load_only(self) -> Answer {
        Answer {
            tokens: Vec::new(),
            reason: "load",
            metrics: ExpectedMetrics::default(),
            ..self
        }
    }
}

/// How a dialect puts an [`Answer`] on the wire.
pub(super) trait Framing {
    /// The reply in one piece (not streamed), with the whole text.
    fn whole(&self, a: &Answer) -> Resp;
    /// The lines of the stream.
    fn stream(&self, a: &Answer) -> Frames;
}

/// Sends `a` as `g` asked (stream or not), framed by `f`, with the directives applied by the
/// shared core (stream.rs). The token counts are credited to the stats as they go on the wire.
///
/// With [`super::FakeOllama::set_num_parallel`], the request first takes one of its model's
/// slots, as Ollama's runner does in `Completion` after the scheduler handed it the runner
/// (so after `load_duration` was taken): the wait is added to `total_duration` only, and the
/// slot is held until the reply is sent or the stream task ends.
pub(super) async fn run(
    inner: &Arc<Inner>,
    g: &Gen,
    mut a: Answer,
    f: &impl Framing,
) -> Result<Resp, BoxError> {
    let slot = if g.load_only {
        None
    } else {
        inner.take_slot(&g.model).await
    };
    if let Some((_, waited)) = &slot {
        a.metrics.total_duration += waited.as_nanos() as u64;
    }
    let slot = slot.map(|(permit, _)| permit);
    if !g.stream {
        if hold(inner, &a.d, a.tokens.len() as u64 + 1).await? == Whole::ModelError {
            let shape = g.api.shape();
            return Ok(shape.err(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR, false));
        }
        let resp = f.whole(&a);
        let (pc, ec) = a.counts();
        inner.credit(pc, ec);
        drop(slot);
        return Ok(resp);
    }
    let frames = f.stream(&a);
    start_stream(inner, frames, a.d, slot).await
}
