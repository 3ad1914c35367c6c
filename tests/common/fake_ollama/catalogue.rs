//! The model catalogue: /api/version, /api/tags, /api/ps, /api/show, /api/delete, /api/pull,
//! /api/blobs/:digest, and their /v1 forms /v1/models and /v1/models/:model.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::gojson::{rfc3339_nano, J};
use super::http::{
    full, json_ok, method_not_allowed, model_field, native_err, native_err_body, ndjson, oai_err,
    oai_ok, Resp, Shape, CT_JSON, CT_NDJSON,
};
use super::stream::{start_stream, Frames};
use super::{read_body, BoxError, Directives, Inner};

/// Version reported by `GET /api/version`.
pub const VERSION: &str = "0.12.6";
/// Names (as listed by /api/tags) of the models the fake has. Any name starting with `test-` is also known.
pub const KNOWN_MODELS: &[&str] = &[
    "llama3.2:latest",
    "qwen2.5:0.5b",
    "gemma3:1b",
    "nomic-embed-text:latest",
];
/// Error message of a pull of an unknown model (sent as an error line after `pulling manifest`).
pub const PULL_ERROR: &str = "pull model manifest: file does not exist";

/// Whether the fake knows model `name` (the names of [`KNOWN_MODELS`], with or without
/// `:latest`, and anything starting with `test-`).
pub fn is_known_model(name: &str) -> bool {
    if name.starts_with("test-") {
        return true;
    }
    KNOWN_MODELS
        .iter()
        .any(|m| *m == name || m.strip_suffix(":latest") == Some(name))
}

// ---------------------------------------------------------------------------------------------
// Static catalogue
// ---------------------------------------------------------------------------------------------

struct ModelInfo {
    name: &'static str,
    family: &'static str,
    parameter_size: &'static str,
    quantization: &'static str,
    format: &'static str,
    size: u64,
    digest: &'static str,
    embedding: bool,
}

const CATALOG: &[ModelInfo] = &[
    ModelInfo {
        name: "llama3.2:latest",
        family: "llama",
        parameter_size: "3.2B",
        quantization: "Q4_K_M",
        format: "gguf",
        size: 2_019_393_189,
        digest: "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        embedding: false,
    },
    ModelInfo {
        name: "qwen2.5:0.5b",
        family: "qwen2",
        parameter_size: "494.03M",
        quantization: "Q4_K_M",
        format: "gguf",
        size: 397_821_319,
        digest: "a8b0c51577010a279d933d14c2a8ab4b268079d44c5c8830c0a93900f1827c67",
        embedding: false,
    },
    ModelInfo {
        name: "gemma3:1b",
        family: "gemma3",
        parameter_size: "999.89M",
        quantization: "Q4_K_M",
        format: "gguf",
        size: 815_319_791,
        digest: "8648f39daa8fbf5b18c7b4e6a8fb4990c692751d49917417b8842ca5758e7ffc",
        embedding: false,
    },
    ModelInfo {
        name: "nomic-embed-text:latest",
        family: "nomic-bert",
        parameter_size: "137M",
        quantization: "F16",
        format: "gguf",
        size: 274_302_450,
        digest: "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        embedding: true,
    },
];

/// Unix time all catalog models were "modified" at (2025-10-01T12:00:00Z).
pub const MODIFIED_UNIX: i64 = 1_759_320_000;
const MODIFIED_AT: &str = "2025-10-01T12:00:00.123456789Z";

fn details_json(mi: &ModelInfo) -> J {
    obj! {
        "parent_model" => "",
        "format" => mi.format,
        "family" => mi.family,
        "families" => vec![J::from(mi.family)],
        "parameter_size" => mi.parameter_size,
        "quantization_level" => mi.quantization,
    }
}

fn catalog_entry(name: &str) -> &'static ModelInfo {
    CATALOG
        .iter()
        .find(|m| m.name == name || m.name.strip_suffix(":latest") == Some(name))
        .unwrap_or(&CATALOG[0])
}

// ---------------------------------------------------------------------------------------------
// Listing and showing
// ---------------------------------------------------------------------------------------------

/// `GET /api/version`.
pub(super) fn version() -> Resp {
    json_ok(&obj! {"version" => VERSION})
}

/// `GET /api/tags`: every catalogue model.
pub(super) fn tags() -> Resp {
    let models = CATALOG
        .iter()
        .map(|mi| {
            obj! {
                "name" => mi.name,
                "model" => mi.name,
                "modified_at" => MODIFIED_AT,
                "size" => mi.size,
                "digest" => mi.digest,
                "details" => details_json(mi),
            }
        })
        .collect::<Vec<_>>();
    json_ok(&obj! {"models" => models})
}

/// `GET /api/ps`: the first catalogue model, loaded for 5 more minutes.
pub(super) fn ps() -> Resp {
    let mi = &CATALOG[0];
    let expires = rfc3339_nano(SystemTime::now() + Duration::from_secs(299));
    json_ok(&obj! {"models" => vec![obj! {
        "name" => mi.name,
        "model" => mi.name,
        "size" => 3_325_000_000u64,
        "digest" => mi.digest,
        "details" => details_json(mi),
        "expires_at" => expires,
        "size_vram" => 3_325_000_000u64,
        "context_length" => 4096u64,
    }]})
}

/// `GET /v1/models`.
pub(super) fn v1_models() -> Resp {
    let data = CATALOG
        .iter()
        .map(|mi| {
            obj! {"id" => mi.name, "object" => "model", "created" => MODIFIED_UNIX, "owned_by" => "library"}
        })
        .collect::<Vec<_>>();
    oai_ok(&obj! {"object" => "list", "data" => data})
}

/// `GET /v1/models/:model`.
pub(super) fn v1_model(name: &str) -> Resp {
    if !is_known_model(name) {
        return oai_err(
            StatusCode::NOT_FOUND,
            &format!("model '{name}' not found"),
            false,
        );
    }
    oai_ok(
        &obj! {"id" => name, "object" => "model", "created" => MODIFIED_UNIX, "owned_by" => "library"},
    )
}

/// `POST /api/show`.
pub(super) fn show(body: &[u8]) -> Resp {
    let name = match known_model(body, "api.ShowRequest") {
        Ok(name) => name,
        Err(r) => return *r,
    };
    let name = name.as_str();
    let mi = catalog_entry(name);
    let caps = if mi.embedding {
        vec![J::from("embedding")]
    } else {
        vec![J::from("completion")]
    };
    json_ok(&obj! {
        "modelfile" => format!("# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {name}\n\nFROM /root/.ollama/models/blobs/sha256-{}\nTEMPLATE \"{{{{ .Prompt }}}}\"\nPARAMETER stop <|eot_id|>\n", mi.digest),
        "parameters" => "stop                           \"<|eot_id|>\"",
        "template" => "{{ .Prompt }}",
        "details" => details_json(mi),
        "model_info" => obj! {
            "general.architecture" => mi.family,
            "general.parameter_count" => 3_212_749_888u64,
            "llama.context_length" => 131_072u64,
        },
        "capabilities" => caps,
        "modified_at" => MODIFIED_AT,
    })
}

/// `DELETE /api/delete`: 200 with an empty body (nothing is deleted).
pub(super) fn delete(body: &[u8]) -> Resp {
    match known_model(body, "api.DeleteRequest") {
        Ok(_) => full(StatusCode::OK, None, Bytes::new()),
        Err(r) => *r,
    }
}

/// The `model` (or `name`) of a show/delete request bound as Go type `go_type`, when it names
/// a known model; otherwise Ollama's answer: the bind error, 400 `model is required`, or 404.
fn known_model(body: &[u8], go_type: &str) -> Result<String, Box<Resp>> {
    let req = Shape::Native.bind(body, go_type, &[("model", "string"), ("name", "string")])?;
    Shape::Native.known_model(model_field(&req))
}

// ---------------------------------------------------------------------------------------------
// Pull and blobs
// ---------------------------------------------------------------------------------------------

/// Deterministic 64-hex digest for `name`.
fn fake_digest(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(64);
    for round in 0..4u64 {
        for b in name.bytes().chain(round.to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// `POST /api/pull`: a progress stream for a known model (nothing is downloaded); for an unknown
/// one, `pulling manifest` then the error line.
pub(super) async fn pull(inner: &Arc<Inner>, body: &[u8]) -> Result<Resp, BoxError> {
    let req = match Shape::Native.bind(
        body,
        "api.PullRequest",
        &[("model", "string"), ("name", "string"), ("stream", "bool")],
    ) {
        Ok(r) => r,
        Err(r) => return Ok(*r),
    };
    let name = model_field(&req).to_string();
    if name.is_empty() {
        return Ok(native_err(StatusCode::BAD_REQUEST, "model is required"));
    }
    let known = is_known_model(&name);
    if req.get("stream") == Some(&Value::Bool(false)) {
        return Ok(if known {
            json_ok(&obj! {"status" => "success"})
        } else {
            native_err(StatusCode::INTERNAL_SERVER_ERROR, PULL_ERROR)
        });
    }
    let mut content = vec![ndjson(&obj! {"status" => "pulling manifest"})];
    let mut tail = Vec::new();
    let error_line = ndjson(&obj! {"error" => PULL_ERROR});
    let mut d = Directives::default();
    if known {
        let digest = if is_known_model(&name) && !name.starts_with("test-") {
            catalog_entry(&name).digest.to_string()
        } else {
            fake_digest(&name)
        };
        let total: u64 = if name.starts_with("test-") {
            1_000_000
        } else {
            catalog_entry(&name).size
        };
        let status = format!("pulling {}", &digest[..12]);
        let sha = format!("sha256:{digest}");
        for completed in [0, total / 2, total] {
            let mut j = obj! {"status" => &status, "digest" => &sha};
            j.push_nz("total", total);
            j.push_nz("completed", completed);
            content.push(ndjson(&j));
        }
        for s in [
            "verifying sha256 digest",
            "writing manifest",
            "removing unused layers",
        ] {
            content.push(ndjson(&obj! {"status" => s}));
        }
        tail.push(ndjson(&obj! {"status" => "success"}));
    } else {
        d.error_after = Some(1);
    }
    let frames = Frames {
        content_type: CT_NDJSON,
        content,
        tail,
        credit: None,
        error_line,
        early_error: (CT_JSON, native_err_body(PULL_ERROR)),
    };
    start_stream(inner, frames, d, None).await
}

/// `HEAD` / `POST /api/blobs/:digest`. The body is counted as it streams in, never kept. A POST
/// stores only the digest (201 the first time, then 200); the content is not checked.
pub(super) async fn blob(
    inner: &Inner,
    method: &Method,
    digest: &str,
    body: Incoming,
) -> Result<Resp, BoxError> {
    match *method {
        Method::HEAD => {
            let _ = read_body(inner, body, false).await?;
            let known = inner.blobs.lock().unwrap().contains(digest);
            Ok(if known {
                full(StatusCode::OK, None, Bytes::new())
            } else {
                native_err(StatusCode::NOT_FOUND, &format!("blob {digest:?} not found"))
            })
        }
        Method::POST => {
            let _ = read_body(inner, body, false).await?;
            let new = inner.blobs.lock().unwrap().insert(digest.to_string());
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(full(status, None, Bytes::new()))
        }
        _ => Ok(method_not_allowed()),
    }
}
