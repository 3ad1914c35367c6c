//! Ollama's progress lines: every line of a native stream but the last carries `"done":false`
//! and nothing the tap needs once the model and the first content are known. Telling one from
//! the bytes alone, with `memchr` and no parse, is what lets [`super::ndjson`] skip it.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Longest line the progress-line fast path considers (Ollama's are a few hundred bytes).
pub(super) const SKIP_LIMIT: usize = 4096;

/// Searchers for the two keys that can change a reading, built once (building one costs more
/// than searching a short line).
static DONE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"done\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// A whole line (newline included) that is an object with `"done":false` as its one `"done"`,
/// no `"error"` key, at most [`SKIP_LIMIT`] bytes, as Ollama writes every line but the last:
/// it can neither end the answer nor make it fail. Inside a JSON string a quote is escaped,
/// so `"done"` and `"error"` as bytes are keys or whole string values; a line naming either
/// twice, or `done` as a value, is parsed like any other. A malformed line of this shape is
/// skipped too (garbage either way; whatever the cut, the same lines are skipped).
pub(super) fn is_progress_line(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\n") else {
        return false;
    };
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    body.last() == Some(&b'}')
        && could_be_progress(body)
        && DONE_KEY
            .find(body)
            .is_some_and(|at| body[at + 6..].starts_with(b":false"))
}

/// Whether `start` may begin a progress line: true of every prefix of one, so holding a
/// split line while this holds, and scanning it as soon as it does not, sees the same lines
/// as a reader given the whole line at once.
pub(super) fn could_be_progress(start: &[u8]) -> bool {
    if start.len() > SKIP_LIMIT || start.first().is_some_and(|&b| b != b'{') {
        return false;
    }
    if ERROR_KEY.find(start).is_some() {
        return false;
    }
    let mut done = DONE_KEY.find_iter(start);
    match (done.next(), done.next()) {
        (None, _) => true,
        (Some(at), None) => {
            let after = &start[at + 6..];
            let n = after.len().min(6);
            after[..n] == b":false"[..n]
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_told_from_lines_that_can_change_the_reading() {
        let progress = [
            "{\"model\":\"m\",\"response\":\"x\",\"done\":false}\n",
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\\\"done\\\":true\"},\"done\":false}\r\n",
        ];
        for line in progress {
            assert!(is_progress_line(line.as_bytes()), "{line}");
        }
        let not = [
            "{\"model\":\"m\",\"response\":\"x\",\"done\":false}", // no newline yet
            "{\"model\":\"m\",\"done\":true,\"eval_count\":1}\n",
            "{\"model\":\"m\",\"response\":\"x\",\"done\": false}\n",
            "{\"error\":\"boom\",\"done\":false}\n",
            "{\"response\":\"done\",\"done\":false}\n",
            "{\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{\"done\":false}}}]},\"done\":true}\n",
            "  {\"done\":false}\n",
        ];
        for line in not {
            assert!(!is_progress_line(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn every_prefix_of_a_progress_line_could_be_one_and_other_lines_stop_being_one() {
        let line = b"{\"model\":\"m\",\"response\":\"x\",\"done\":false}\n";
        assert!(is_progress_line(line));
        for n in 0..line.len() {
            assert!(could_be_progress(&line[..n]), "prefix {n}");
        }
        let last = b"{\"model\":\"m\",\"done\":true}";
        let at = last.len() - 2; // `"done":t` is enough to tell
        assert!(!could_be_progress(&last[..at]));
        assert!(!could_be_progress(&[b'{'; SKIP_LIMIT + 1]));
    }
}
