//! Reading one config file into its `raw.rs` mirror: a syntax error with its line and column,
//! a type error naming its field (the path `serde_path_to_error` tracks while deserialising),
//! and a warning for every key the mirror does not declare (the keys `serde_ignored` reports).

use std::path::Path;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_path_to_error::Segment;

use super::raw::{RawGlobal, RawInput, RawInstance, RawMain, RawWriter};
use super::{check, validate, ConfigError, Pos};

/// A whole config file's raw mirror: [`RawMain`] or [`RawInput`].
pub(super) trait RawFile: DeserializeOwned {
    /// The file's array of tables, which must be written `[[key]]`.
    const TABLES: &'static str;
    /// The keys of `section` (by name, "" for the top level) when its unknown keys are warned
    /// about; `None` for a section whose keys are not checked.
    fn known(section: &str) -> Option<&'static [&'static str]>;
}

impl RawFile for RawMain {
    const TABLES: &'static str = "writers";

    /// `[global]` and `[[writers]]`; not `[writer_opt]`, `[log]` nor Categraf's other sections.
    fn known(section: &str) -> Option<&'static [&'static str]> {
        match section {
            "global" => Some(fields_of::<RawGlobal>()),
            "writers" => Some(fields_of::<RawWriter>()),
            _ => None,
        }
    }
}

impl RawFile for RawInput {
    const TABLES: &'static str = "instances";

    /// The top level and `[[instances]]`.
    fn known(section: &str) -> Option<&'static [&'static str]> {
        match section {
            "" => Some(fields_of::<RawInput>()),
            "instances" => Some(fields_of::<RawInstance>()),
            _ => None,
        }
    }
}

/// A key that no raw struct declares, so serde skipped it. The order sorts a file's warnings:
/// sections by name, entries by index, keys by name.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ignored {
    /// The top-level key of its section; "" for the top level itself.
    section: String,
    /// The entry's position when the section is an array of tables.
    index: Option<usize>,
    key: String,
}

/// Reads, parses and deserialises the file at `path`, adding a warning for each unknown key.
pub(super) fn file<T: RawFile>(path: &Path, warnings: &mut Vec<String>) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = read(path)?;
    let table = parse_table(&file, &text)?;
    if let Some(toml::Value::Table(_)) = table.get(T::TABLES) {
        let message = format!(
            "is a single table; write [[{}]] with double brackets",
            T::TABLES
        );
        return Err(validate::invalid(&file, T::TABLES, message));
    }
    let mut ignored = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| ignored.extend(Ignored::at(&path));
    let de = serde_ignored::Deserializer::new(toml::Deserializer::new(&text), &mut note);
    let raw = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = field_name(e.path(), T::TABLES);
        let e = e.into_inner();
        let message = one_line(e.message());
        ConfigError::Type {
            file: file.clone(),
            pos: Pos(e.span().map(|s| line_col(&text, s.start))),
            message: match field {
                Some(field) => format!("{field}: {message}"),
                None => message,
            },
        }
    })?;
    ignored.sort();
    warnings.extend(
        ignored
            .iter()
            .filter_map(|i| Some(i.warning(&file, T::known(&i.section)?))),
    );
    Ok(raw)
}

/// The text of a config file.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        reason: check::io_reason(&e),
    })
}

/// The file as a TOML table: any syntax error is reported here, before the types are checked.
fn parse_table(file: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            pos: Pos(e.span().map(|s| line_col(text, s.start))),
            message: one_line(e.message()),
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

// === impl Ignored ===

impl Ignored {
    /// The key at `path` when it is one of the top level, of a top-level table or of an entry of
    /// a top-level array of tables: where raw.rs has its structs.
    fn at(path: &serde_ignored::Path<'_>) -> Option<Ignored> {
        use serde_ignored::Path as P;
        let P::Map { parent, key } = path else {
            return None;
        };
        let (section, index) = match parent {
            P::Root => ("", None),
            P::Map {
                parent: P::Root,
                key,
            } => (key.as_str(), None),
            P::Seq {
                parent:
                    P::Map {
                        parent: P::Root,
                        key,
                    },
                index,
            } => (key.as_str(), Some(*index)),
            _ => return None,
        };
        let (section, key) = (section.to_owned(), key.clone());
        Some(Ignored {
            section,
            index,
            key,
        })
    }

    /// E.g. `conf/x.toml: instances[0]: unknown key "olama_url" (ignored; did you mean "ollama_url"?)`.
    fn warning(&self, file: &str, known: &[&str]) -> String {
        let place = match (self.section.as_str(), self.index) {
            ("", _) => String::new(),
            (section, None) => format!(" {section}:"),
            (section, Some(i)) => format!(" {section}[{i}]:"),
        };
        let key = &self.key;
        let hint = known
            .iter()
            .map(|k| (edit_distance(key, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!("; did you mean {k:?}?"))
            .unwrap_or_default();
        format!("{file}:{place} unknown key {key:?} (ignored{hint})")
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The keys the struct `T` declares: the list serde's derive hands to `deserialize_struct`,
/// which [`FieldProbe`] keeps before it fails the deserialisation.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// A deserializer that only records the field list of the struct asked of it.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only the field list was wanted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
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

    #[test]
    fn unknown_key_hints() {
        let ignored = |key: &str| Ignored {
            section: "instances".into(),
            index: Some(0),
            key: key.into(),
        };
        let known = ["ollama_url", "port"];
        assert_eq!(
            ignored("olama_url").warning("f.toml", &known),
            "f.toml: instances[0]: unknown key \"olama_url\" (ignored; did you mean \"ollama_url\"?)"
        );
        assert_eq!(
            ignored("zzz").warning("f.toml", &known),
            "f.toml: instances[0]: unknown key \"zzz\" (ignored)"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_known_keys_are_the_raw_structs_fields() {
        let instance = fields_of::<RawInstance>();
        assert!(instance.contains(&"ollama_url") && instance.contains(&"max_connections"));
        assert_eq!(RawMain::known("global"), Some(fields_of::<RawGlobal>()));
        assert!(RawMain::known("global").is_some_and(|k| k.contains(&"print_configs")));
        assert!(RawInput::known("").is_some_and(|k| k.contains(&"relabel_configs")));
        assert_eq!(RawMain::known("heartbeat"), None);
        assert_eq!(RawMain::known("log"), None);
    }
}
