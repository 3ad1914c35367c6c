//! Reading one config file into its `raw.rs` mirror: a syntax error with its line and column,
//! a type error naming its field (the path `serde_path_to_error` tracks while deserialising).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::{check, ConfigError, Pos};

/// The text of a config file.
pub(super) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        reason: check::io_reason(&e),
    })
}

/// The file as a TOML table: any syntax error is reported here, before the types are checked.
pub(super) fn parse_table(file: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            pos: Pos(e.span().map(|s| line_col(text, s.start))),
            message: one_line(e.message()),
        })
}

/// Deserialises the file's text (so the error has a position); a type error names the field
/// it is in, as `instances[1].timeout`. `tables` is the file's array of tables (`writers`,
/// `instances`), whose entries are named with their index.
pub(super) fn decode<T: DeserializeOwned>(
    file: &str,
    text: &str,
    tables: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        let field = field_name(e.path(), tables);
        let e = e.into_inner();
        let message = one_line(e.message());
        ConfigError::Type {
            file: file.to_owned(),
            pos: Pos(e.span().map(|s| line_col(text, s.start))),
            message: match field {
                Some(field) => format!("{field}: {message}"),
                None => message,
            },
        }
    })
}

/// The field as messages name it: `instances[1].timeout`, `global.labels.n`. Only an entry of
/// the file's array of tables `tables` shows its index; an element of a list value is named by
/// its list (`writers[0].headers`, `metrics_drop`). `None` for the whole document.
fn field_name(path: &serde_path_to_error::Path, tables: &str) -> Option<String> {
    let mut name = String::new();
    for (depth, segment) in path.iter().enumerate() {
        match segment {
            Segment::Seq { index } if depth == 1 && name == tables => {
                name.push_str(&format!("[{index}]"))
            }
            Segment::Seq { .. } => {}
            other => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&other.to_string());
            }
        }
    }
    Some(name).filter(|n| !n.is_empty())
}

/// Line and column (1-based, in characters) of a byte offset in a file's text.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Puts a possibly multi-line message on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('x').unwrap_or(0)), (2, 6));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn one_line_joins_the_lines() {
        assert_eq!(one_line("a\n  b \n\nc"), "a; b; c");
    }
}
