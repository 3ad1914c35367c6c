//! Prompt directives (see the table in the module docs), the reply tokens and the metrics the
//! fake derives from a prompt. Pure functions: the tests call them to compute what to expect.

/// Reply length when no `[[tokens:N]]` directive is given.
pub const DEFAULT_REPLY_TOKENS: usize = 5;
/// Words the reply is made of, cycled: token i is `REPLY_WORDS[i % len]`, with a leading space for i > 0.
pub const REPLY_WORDS: &[&str] = &[
    "The",
    "sky",
    "is",
    "blue",
    "because",
    "sunlight",
    "is",
    "scattered",
    "by",
    "the",
    "air",
    "and",
    "blue",
    "light",
    "scatters",
    "more",
    "than",
    "red",
    "light.",
];
/// Default `load_duration` (ns).
pub const DEFAULT_LOAD_NS: u64 = 2_000_000;
/// `prompt_eval_duration` per prompt token (ns).
pub const PROMPT_NS_PER_TOKEN: u64 = 1_000_000;
/// `eval_duration` per reply token (ns).
pub const EVAL_NS_PER_TOKEN: u64 = 10_000_000;
/// Added to the other durations to make `total_duration` (ns).
pub const TOTAL_EXTRA_NS: u64 = 1_000_000;
/// Message of the error line / 500 produced by `[[error_after:K]]`.
pub const MODEL_ERROR: &str = "an error was encountered while running the model";

/// Prompt directives, see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub tokens: Option<usize>,
    pub delay_ms: u64,
    pub first_delay_ms: u64,
    pub error_after: Option<usize>,
    pub cut_after: Option<usize>,
    pub hang: bool,
    pub split: bool,
    pub load_ms: Option<u64>,
    pub nocounts: bool,
    pub gate: bool,
}

/// Splits the directives out of `text`. Returns them and the text with each directive replaced by
/// a space. Unknown `[[...]]` and directives with a bad number are left in the text.
pub fn parse_directives(text: &str) -> (Directives, String) {
    let mut d = Directives::default();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("]]") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        if apply_directive(&mut d, inner) {
            out.push(' ');
            rest = &after[end + 2..];
        } else {
            out.push_str("[[");
            rest = after;
        }
    }
    out.push_str(rest);
    (d, out)
}

fn apply_directive(d: &mut Directives, inner: &str) -> bool {
    let (name, value) = match inner.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (inner.trim(), None),
    };
    let num = || value.and_then(|v| v.parse::<u64>().ok());
    match (name, value) {
        ("hang", None) => d.hang = true,
        ("split", None) => d.split = true,
        ("nocounts", None) => d.nocounts = true,
        ("gate", None) => d.gate = true,
        ("tokens", Some(_)) => match num() {
            Some(n) => d.tokens = Some(n as usize),
            None => return false,
        },
        ("delay", Some(_)) => match num() {
            Some(n) => d.delay_ms = n,
            None => return false,
        },
        ("first_delay", Some(_)) => match num() {
            Some(n) => d.first_delay_ms = n,
            None => return false,
        },
        ("error_after", Some(_)) => match num() {
            Some(n) => d.error_after = Some(n as usize),
            None => return false,
        },
        ("cut_after", Some(_)) => match num() {
            Some(n) => d.cut_after = Some(n as usize),
            None => return false,
        },
        ("load", Some(_)) => match num() {
            Some(n) => d.load_ms = Some(n),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// Number of prompt tokens the fake reports for `text`: its whitespace-separated words once the
/// directives are removed.
pub fn prompt_tokens(text: &str) -> u64 {
    parse_directives(text).1.split_whitespace().count() as u64
}

/// The prompt text of a chat request: the message contents joined with `"\n"`.
pub fn chat_prompt(contents: &[&str]) -> String {
    contents.join("\n")
}

/// The first `n` reply tokens.
pub fn make_reply_tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let w = REPLY_WORDS[i % REPLY_WORDS.len()];
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// The tokens the fake replies with to `prompt` (before any `num_predict`/`max_tokens` truncation).
pub fn reply_tokens(prompt: &str) -> Vec<String> {
    let (d, _) = parse_directives(prompt);
    make_reply_tokens(d.tokens.unwrap_or(DEFAULT_REPLY_TOKENS))
}

/// The full reply text (concatenated [`reply_tokens`]).
pub fn reply_text(prompt: &str) -> String {
    reply_tokens(prompt).concat()
}

/// Metrics of a final object. A count of `None` is omitted from the JSON, as is any zero duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectedMetrics {
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: Option<u64>,
    pub prompt_eval_duration: u64,
    pub eval_count: Option<u64>,
    pub eval_duration: u64,
}

/// Metrics the fake puts in the final object for `prompt_text` (the generate prompt or the
/// [`chat_prompt`]), given the request's `num_predict`/`max_tokens` if any.
pub fn expected_metrics(prompt_text: &str, num_predict: Option<i64>) -> ExpectedMetrics {
    let (d, clean) = parse_directives(prompt_text);
    let p = clean.split_whitespace().count() as u64;
    let (n, _) = truncate(d.tokens.unwrap_or(DEFAULT_REPLY_TOKENS), num_predict);
    metrics_for(&d, p, n as u64)
}

/// The reply length once `num_predict`/`max_tokens` is applied, and the `done_reason` it gives.
pub(super) fn truncate(n: usize, num_predict: Option<i64>) -> (usize, &'static str) {
    match num_predict {
        Some(np) if np > 0 && (np as u64) < n as u64 => (np as usize, "length"),
        _ => (n, "stop"),
    }
}

/// The metrics of a reply of `e` tokens to a prompt of `p` tokens.
pub(super) fn metrics_for(d: &Directives, p: u64, e: u64) -> ExpectedMetrics {
    let load = d
        .load_ms
        .map(|ms| ms * 1_000_000)
        .unwrap_or(DEFAULT_LOAD_NS);
    let pd = PROMPT_NS_PER_TOKEN * p;
    let ed = EVAL_NS_PER_TOKEN * e;
    let nz = |v: u64| if v == 0 || d.nocounts { None } else { Some(v) };
    ExpectedMetrics {
        total_duration: load + pd + ed + TOTAL_EXTRA_NS,
        load_duration: load,
        prompt_eval_count: nz(p),
        prompt_eval_duration: pd,
        eval_count: nz(e),
        eval_duration: ed,
    }
}
