//! The `model` label: a model name as Ollama resolves it, so `llama3.2` and
//! `llama3.2:latest` (the same model to Ollama) are one label.

/// The label for `name`: a name without a tag gets Ollama's default tag `:latest`.
///
/// The tag is what follows the last `:` after the last `/` (a `:` before it belongs to a
/// registry host such as `localhost:5000/m`). Always a new `String` (one allocation): a copy
/// of `name` when it already has a tag (`""` stays `""`), else `name` followed by `:latest`.
pub fn normalize(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    if name.is_empty() || base.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_names_get_latest() {
        assert_eq!(normalize("llama3.2"), "llama3.2:latest");
        assert_eq!(normalize("llama3.2:latest"), "llama3.2:latest");
        assert_eq!(normalize("qwen2.5:0.5b"), "qwen2.5:0.5b");
        assert_eq!(
            normalize("hf.co/org/repo-GGUF:Q4_K_M"),
            "hf.co/org/repo-GGUF:Q4_K_M"
        );
        assert_eq!(
            normalize("hf.co/org/repo-GGUF"),
            "hf.co/org/repo-GGUF:latest"
        );
        assert_eq!(
            normalize("localhost:5000/team/m"),
            "localhost:5000/team/m:latest"
        );
        assert_eq!(normalize(""), "");
    }
}
