//! The real Python clients (`ollama` and `openai` from PyPI) as test drivers: a script in
//! `tests/python/` runs against the agent's URL and prints one JSON report on stdout.

use std::process::Command;

/// What installs the packages the scripts need (scripts/test.sh runs it).
pub const PIP: &str = "python3 -m pip install ollama openai";
/// Exit status of a script when a package is missing.
pub const MISSING_PACKAGES: i32 = 3;

/// Runs `python3 tests/python/<script> <url>` off the async runtime and returns what it
/// printed; panics with the pip command if python3 or the packages are missing, and with the
/// script's stderr if it failed. The tests fail, never skip, without Python.
pub async fn report(script: &str, url: &str) -> Vec<u8> {
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([&path, &url])
            .env_remove("OLLAMA_HOST")
            .env_remove("OLLAMA_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .output()
            .unwrap_or_else(|e| panic!("python3 does not run ({e}); install it, then `{PIP}`"))
    })
    .await
    .unwrap();
    assert_ne!(
        out.status.code(),
        Some(MISSING_PACKAGES),
        "the Python packages `ollama` and `openai` are missing: run `{PIP}` (scripts/test.sh does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The model label the agent uses for a name a client sent: a name without a tag gets
/// `:latest`, as Ollama resolves it; `no-such-model` (answered 404) gets no label of its own.
pub fn model_label(model: &str) -> String {
    if model == "no-such-model" {
        "other".to_string()
    } else if model.contains(':') {
        model.to_string()
    } else {
        format!("{model}:latest")
    }
}
