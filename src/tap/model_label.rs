//! The `model` label: a model name as Ollama resolves it, so `llama3.2` and
//! `llama3.2:latest` (the same model to Ollama) are one label.

/// The label for `name`: a name without a tag gets Ollama's default tag `:latest`.
///
/// The tag is what follows the last `:` after the last `/` (a `:` before it belongs to a
/// registry host such as `localhost:5000/m`). A name that already has a tag is returned as
/// it is: an owned `String` comes back unchanged, without allocating (the request's model,
/// on every metered request); a borrowed name is copied once. `""` stays `""`. An untagged
/// name costs one allocation, for the name followed by `:latest`.
pub(crate) fn normalize<S: AsRef<str> + Into<String>>(name: S) -> String {
    if has_tag(name.as_ref()) {
        name.into()
    } else {
        format!("{}:latest", name.as_ref())
    }
}

/// Whether `name` needs no `:latest` (it has a tag, or is empty).
fn has_tag(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name.is_empty() || base.contains(':')
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
        assert_eq!(normalize(String::from("llama3.2")), "llama3.2:latest");
        let borrowed = String::from("m");
        assert_eq!(normalize(&borrowed), "m:latest");
        assert_eq!(borrowed, "m");
    }

    #[test]
    fn an_owned_tagged_name_is_returned_as_it_is() {
        for name in ["qwen2.5:0.5b", "hf.co/org/repo-GGUF:Q4_K_M", ""] {
            let owned = String::from(name);
            let (ptr, cap) = (owned.as_ptr(), owned.capacity());
            let got = normalize(owned);
            assert_eq!(got, name);
            // the same buffer: no copy was made
            assert_eq!((got.as_ptr(), got.capacity()), (ptr, cap), "{name}");
        }
    }
}
