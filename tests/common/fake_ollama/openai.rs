//! The OpenAI compatibility layer: /v1/chat/completions, /v1/completions (SSE streams, `usage`,
//! `stream_options.include_usage`) and /v1/embeddings. (/v1/models is in catalogue.rs.)

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::Value;

use super::generation::{run, Answer, Api, Framing, Gen};
use super::gojson::{unix_now, J};
use super::http::{oai_error_json, oai_ok, Resp, CT_JSON_BARE, CT_SSE};
use super::native::{embed_with, embedding_of, EmbedApi};
use super::stream::Frames;
use super::{BoxError, Inner, MODEL_ERROR};

// ---------------------------------------------------------------------------------------------
// /v1/chat/completions, /v1/completions
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(inner: &Arc<Inner>, body: &[u8]) -> Result<Resp, BoxError> {
    respond(inner, body, Api::OaiChat).await
}

/// `POST /v1/completions`.
pub(super) async fn completions(inner: &Arc<Inner>, body: &[u8]) -> Result<Resp, BoxError> {
    respond(inner, body, Api::OaiCompletion).await
}

async fn respond(inner: &Arc<Inner>, body: &[u8], api: Api) -> Result<Resp, BoxError> {
    let g = match Gen::parse(body, api) {
        Ok(g) => g,
        Err(r) => return Ok(*r),
    };
    let mut a = g.answer(inner, g.req.get("max_tokens").and_then(Value::as_i64));
    if g.load_only {
        // /v1/completions with an empty prompt: the generate handler only loads the model.
        a = a.load_only();
    }
    let id = match api {
        Api::OaiChat => format!("chatcmpl-{}", a.seq),
        _ => format!("cmpl-{}", a.seq),
    };
    let include_usage = g
        .req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));
    let f = OpenAi {
        g: &g,
        id,
        created: unix_now(),
        include_usage,
    };
    run(inner, &g, a, &f).await
}

/// One SSE event: `data: <json>` and a blank line.
fn sse(j: &J) -> Bytes {
    Bytes::from(format!("data: {}\n\n", j.go()))
}

/// `usage` with these counts.
fn usage(pc: u64, ec: u64) -> J {
    obj! {"prompt_tokens" => pc, "completion_tokens" => ec, "total_tokens" => pc + ec}
}

/// The OpenAI framing: `chat.completion`(`.chunk`) or `text_completion` objects.
struct OpenAi<'a> {
    g: &'a Gen,
    id: String,
    created: i64,
    include_usage: bool,
}

impl OpenAi<'_> {
    fn chat(&self) -> bool {
        self.g.api == Api::OaiChat
    }

    /// A stream chunk (the field order differs between the two endpoints).
    fn chunk(&self, choices: Vec<J>, usage: Option<J>) -> J {
        let mut j = if self.chat() {
            obj! {
                "id" => &self.id,
                "object" => "chat.completion.chunk",
                "created" => self.created,
                "model" => &self.g.model,
                "system_fingerprint" => "fp_ollama",
                "choices" => choices,
            }
        } else {
            obj! {
                "id" => &self.id,
                "object" => "text_completion",
                "created" => self.created,
                "choices" => choices,
                "model" => &self.g.model,
                "system_fingerprint" => "fp_ollama",
            }
        };
        if let Some(u) = usage {
            j.push("usage", u);
        }
        j
    }

    /// Chat: a delta per token (the first with the role), then a finish chunk with `delta:{}`.
    fn chat_lines(&self, a: &Answer) -> (Vec<Bytes>, Bytes) {
        let content = a
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let delta = if i == 0 {
                    obj! {"role" => "assistant", "content" => t}
                } else {
                    obj! {"content" => t}
                };
                let choice = obj! {"index" => 0u64, "delta" => delta, "finish_reason" => J::Null};
                sse(&self.chunk(vec![choice], None))
            })
            .collect();
        let finish = obj! {"index" => 0u64, "delta" => obj! {}, "finish_reason" => a.reason};
        (content, sse(&self.chunk(vec![finish], None)))
    }

    /// Completions: a text chunk per token, then a finish chunk with `text:""`; with
    /// include_usage every one of them carries a zero usage.
    fn completion_lines(&self, a: &Answer) -> (Vec<Bytes>, Bytes) {
        let zero_usage = || self.include_usage.then(|| usage(0, 0));
        let content = a
            .tokens
            .iter()
            .map(|t| {
                let choice = obj! {"text" => t, "index" => 0u64, "finish_reason" => J::Null};
                sse(&self.chunk(vec![choice], zero_usage()))
            })
            .collect();
        let finish = obj! {"text" => "", "index" => 0u64, "finish_reason" => a.reason};
        (content, sse(&self.chunk(vec![finish], zero_usage())))
    }
}

impl Framing for OpenAi<'_> {
    fn whole(&self, a: &Answer) -> Resp {
        let text = a.tokens.concat();
        let (object, choice) = if self.chat() {
            let message = obj! {"role" => "assistant", "content" => &text};
            (
                "chat.completion",
                obj! {"index" => 0u64, "message" => message, "finish_reason" => a.reason},
            )
        } else {
            (
                "text_completion",
                obj! {"text" => &text, "index" => 0u64, "finish_reason" => a.reason},
            )
        };
        let (pc, ec) = a.counts();
        oai_ok(&obj! {
            "id" => &self.id,
            "object" => object,
            "created" => self.created,
            "model" => &self.g.model,
            "system_fingerprint" => "fp_ollama",
            "choices" => vec![choice],
            "usage" => usage(pc, ec),
        })
    }

    /// The content and finish chunks; with include_usage a `choices:[]` chunk with the real
    /// usage; then `[DONE]`.
    fn stream(&self, a: &Answer) -> Frames {
        let (content, finish) = if self.chat() {
            self.chat_lines(a)
        } else {
            self.completion_lines(a)
        };
        let mut tail = vec![finish];
        let mut credit = None;
        if self.include_usage {
            let (pc, ec) = a.counts();
            credit = Some((1, pc, ec));
            tail.push(sse(&self.chunk(vec![], Some(usage(pc, ec)))));
        }
        tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let error = oai_error_json(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR);
        Frames {
            content_type: CT_SSE,
            content,
            tail,
            credit,
            error_line: sse(&error),
            early_error: (CT_JSON_BARE, Bytes::from(error.go() + "\n")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /v1/embeddings
// ---------------------------------------------------------------------------------------------

/// `POST /v1/embeddings`: a list of embedding objects and `usage` (prompt tokens only).
pub(super) async fn embeddings(inner: &Inner, body: &[u8]) -> Result<Resp, BoxError> {
    embed_with(inner, body, EmbedApi::OpenAi, |inner, e| {
        let pc = if e.d.nocounts { 0 } else { e.p };
        let data = e
            .inputs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                obj! {"object" => "embedding", "embedding" => embedding_of(s, e.dims), "index" => i}
            })
            .collect::<Vec<_>>();
        inner.credit(pc, 0);
        oai_ok(&obj! {
            "object" => "list",
            "data" => data,
            "model" => &e.model,
            "usage" => obj!{"prompt_tokens" => pc, "total_tokens" => pc},
        })
    })
    .await
}
