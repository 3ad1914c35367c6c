//! Ollama's own API: /api/generate and /api/chat (NDJSON streams, the final object with the
//! metrics, load-only replies), /api/embed and /api/embeddings, and the embedding request core
//! /v1/embeddings shares (as Ollama's OpenAI middleware does).

use std::sync::Arc;
use std::time::SystemTime;

use hyper::StatusCode;
use serde_json::Value;

use super::directives::metrics_for;
use super::generation::{run, Answer, Api, Framing, Gen};
use super::gojson::{rfc3339_nano, J};
use super::http::{
    get_str, json_ok, keep_alive_zero, native_err_body, ndjson, num_predict, Resp, Shape,
    CT_JSON_BARE, CT_NDJSON,
};
use super::stream::{hold, Frames, Whole};
use super::{
    parse_directives, prompt_tokens, BoxError, Directives, Inner, MODEL_ERROR, TOTAL_EXTRA_NS,
};

// ---------------------------------------------------------------------------------------------
// /api/generate, /api/chat
// ---------------------------------------------------------------------------------------------

/// `POST /api/generate`.
pub(super) async fn generate(inner: &Arc<Inner>, body: &[u8]) -> Result<Resp, BoxError> {
    respond(inner, body, Api::Generate).await
}

/// `POST /api/chat`.
pub(super) async fn chat(inner: &Arc<Inner>, body: &[u8]) -> Result<Resp, BoxError> {
    respond(inner, body, Api::Chat).await
}

async fn respond(inner: &Arc<Inner>, body: &[u8], api: Api) -> Result<Resp, BoxError> {
    let g = match Gen::parse(body, api) {
        Ok(g) => g,
        Err(r) => return Ok(*r),
    };
    if g.load_only {
        return Ok(load_reply(&g));
    }
    let a = g.answer(inner, num_predict(&g.req));
    let f = Native {
        g: &g,
        raw: g.req.get("raw") == Some(&Value::Bool(true)),
    };
    run(inner, &g, a, &f).await
}

/// The reply of a request that only loads (or, with `keep_alive: 0`, unloads) the model: one
/// object, even when streaming was asked for, and no metrics.
fn load_reply(g: &Gen) -> Resp {
    let reason = if keep_alive_zero(&g.req) {
        "unload"
    } else {
        "load"
    };
    let mut j = obj! {"model" => &g.model, "created_at" => rfc3339_nano(SystemTime::now())};
    push_content(&mut j, g.api, "");
    j.push("done", true);
    j.push("done_reason", reason);
    json_ok(&j)
}

/// `response` (generate) or `message` (chat).
fn push_content(j: &mut J, api: Api, content: &str) {
    if api == Api::Chat {
        j.push(
            "message",
            obj! {"role" => "assistant", "content" => content},
        );
    } else {
        j.push("response", content);
    }
}

/// The native framing: `api.GenerateResponse` / `api.ChatResponse` objects.
struct Native<'a> {
    g: &'a Gen,
    raw: bool,
}

impl Native<'_> {
    /// `model`, `created_at` (now), then the content.
    fn head(&self, content: &str) -> J {
        let mut j =
            obj! {"model" => &self.g.model, "created_at" => rfc3339_nano(SystemTime::now())};
        push_content(&mut j, self.g.api, content);
        j
    }

    /// The `done:true` object: done reason, `context` (generate, unless raw), metrics.
    fn last(&self, a: &Answer, content: &str) -> J {
        let mut j = self.head(content);
        j.push("done", true);
        j.push("done_reason", a.reason);
        if self.g.api == Api::Generate && !self.raw {
            j.push("context", vec![J::U(1), J::U(2), J::U(3)]);
        }
        j.push_metrics(&a.metrics);
        j
    }
}

impl Framing for Native<'_> {
    fn whole(&self, a: &Answer) -> Resp {
        json_ok(&self.last(a, &a.tokens.concat()))
    }

    fn stream(&self, a: &Answer) -> Frames {
        let (pc, ec) = a.counts();
        let content = a
            .tokens
            .iter()
            .map(|t| {
                let mut j = self.head(t);
                j.push("done", false);
                ndjson(&j)
            })
            .collect();
        Frames {
            content_type: CT_NDJSON,
            content,
            tail: vec![ndjson(&self.last(a, ""))],
            credit: Some((0, pc, ec)),
            error_line: ndjson(&obj! {"error" => MODEL_ERROR}),
            early_error: (CT_JSON_BARE, native_err_body(MODEL_ERROR)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// An embedding endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum EmbedApi {
    /// /api/embed
    Native,
    /// /api/embeddings
    Legacy,
    /// /v1/embeddings
    OpenAi,
}

impl EmbedApi {
    fn shape(self) -> Shape {
        if self == EmbedApi::OpenAi {
            Shape::OpenAi
        } else {
            Shape::Native
        }
    }
}

/// A bound and checked embedding request.
pub(super) struct EmbedReq {
    pub(super) model: String,
    pub(super) inputs: Vec<String>,
    /// Dimensions of each vector (`dimensions`, else 8; at most 4096).
    pub(super) dims: usize,
    /// Directives of all the inputs.
    pub(super) d: Directives,
    /// Prompt tokens of all the inputs.
    pub(super) p: u64,
}

impl EmbedReq {
    /// Binds and checks `body`; `Err` is the error reply.
    fn parse(body: &[u8], api: EmbedApi) -> Result<EmbedReq, Box<Resp>> {
        let shape = api.shape();
        let (go_type, text_field) = match api {
            EmbedApi::Native => ("api.EmbedRequest", "input"),
            EmbedApi::Legacy => ("api.EmbeddingRequest", "prompt"),
            EmbedApi::OpenAi => ("openai.EmbedRequest", "input"),
        };
        let fields: &[(&str, &str)] = if api == EmbedApi::Legacy {
            &[("model", "string"), ("prompt", "string")]
        } else {
            &[("model", "string")]
        };
        let req = shape.bind(body, go_type, fields)?;
        let inputs = inputs(req.get(text_field), api)?;
        let model = shape.known_model(get_str(&req, "model"))?;
        let dims = req
            .get("dimensions")
            .and_then(Value::as_u64)
            .filter(|d| *d > 0)
            .unwrap_or(8)
            .min(4096) as usize;
        let (d, _) = parse_directives(&inputs.join("\n"));
        let p: u64 = inputs.iter().map(|s| prompt_tokens(s)).sum();
        Ok(EmbedReq {
            model,
            inputs,
            dims,
            d,
            p,
        })
    }
}

/// The inputs of an embedding request: `input` (or `prompt`) as a string or an array of strings.
fn inputs(v: Option<&Value>, api: EmbedApi) -> Result<Vec<String>, Box<Resp>> {
    let oai = api == EmbedApi::OpenAi;
    let shape = api.shape();
    let bad = StatusCode::BAD_REQUEST;
    Ok(match v {
        Some(Value::String(s)) if s.is_empty() && oai => vec![String::new()],
        Some(Value::String(s)) if s.is_empty() => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if api != EmbedApi::Legacy => {
            if a.is_empty() && oai {
                return shape.fail(bad, "invalid input", true);
            }
            let mut v = Vec::new();
            for x in a {
                match x {
                    Value::String(s) => v.push(s.clone()),
                    _ => return shape.fail(bad, "invalid input type", false),
                }
            }
            v
        }
        None | Some(Value::Null) if oai => return shape.fail(bad, "invalid input", true),
        None | Some(Value::Null) => vec![],
        Some(_) => return shape.fail(bad, "invalid input type", false),
    })
}

/// Answers an embedding request: binds and checks it, applies the directives as for a
/// non-streamed reply of one line, then replies with `reply`.
pub(super) async fn embed_with(
    inner: &Inner,
    body: &[u8],
    api: EmbedApi,
    reply: impl FnOnce(&Inner, EmbedReq) -> Resp,
) -> Result<Resp, BoxError> {
    let e = match EmbedReq::parse(body, api) {
        Ok(e) => e,
        Err(r) => return Ok(*r),
    };
    if hold(inner, &e.d, 1).await? == Whole::ModelError {
        let shape = api.shape();
        return Ok(shape.err(StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR, false));
    }
    Ok(reply(inner, e))
}

/// Deterministic embedding of `text` with `dims` dimensions.
pub(super) fn embedding_of(text: &str, dims: usize) -> Vec<J> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|i| {
            let x =
                h.rotate_left((i * 7 % 64) as u32) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            J::F(((x % 2001) as f32 - 1000.0) / 1000.0)
        })
        .collect()
}

/// `POST /api/embed`: the vectors and, unless there was no input, the durations and
/// `prompt_eval_count` (no eval count).
pub(super) async fn embed(inner: &Inner, body: &[u8]) -> Result<Resp, BoxError> {
    embed_with(inner, body, EmbedApi::Native, |inner, e| {
        let vecs: Vec<J> = e
            .inputs
            .iter()
            .map(|s| J::A(embedding_of(s, e.dims)))
            .collect();
        let mut j = obj! {"model" => &e.model, "embeddings" => vecs};
        if !e.inputs.is_empty() {
            let m = metrics_for(&e.d, e.p, 0);
            j.push_nz(
                "total_duration",
                m.load_duration + m.prompt_eval_duration + TOTAL_EXTRA_NS,
            );
            j.push_nz("load_duration", m.load_duration);
            let pc = m.prompt_eval_count.unwrap_or(0);
            j.push_nz("prompt_eval_count", pc);
            inner.credit(pc, 0);
        }
        json_ok(&j)
    })
    .await
}

/// `POST /api/embeddings` (legacy): `{"embedding":[...]}` of the prompt, no metrics.
pub(super) async fn embeddings(inner: &Inner, body: &[u8]) -> Result<Resp, BoxError> {
    embed_with(inner, body, EmbedApi::Legacy, |_, e| {
        let v = e
            .inputs
            .first()
            .map(|s| embedding_of(s, e.dims))
            .unwrap_or_default();
        json_ok(&obj! {"embedding" => v})
    })
    .await
}
