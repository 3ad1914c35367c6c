//! Shared by the fuzz targets (each includes it as `mod common;`): how one fuzz input becomes a
//! body and the chunks it arrives in, and a visitor that logs everything the scanner reports.
#![allow(dead_code)] // not every target uses every helper

use ollama_tap::tap::json_scan::{Value, Visitor, CAP, MAX_PATH};

/// Splits a fuzz input into the body and the chunks it is fed in.
///
/// The first byte chooses the split: with its top bit set the body arrives byte by byte;
/// otherwise its low 4 bits are the number `n` of split points, and the next `n` bytes are the
/// lengths of the chunks before each point (0 gives an empty chunk). The rest is the body; the
/// chunks always concatenate to it.
pub fn split(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((&first, rest)) = data.split_first() else {
        return (data, vec![data]);
    };
    if first & 0x80 != 0 {
        return (rest, rest.chunks(1).collect());
    }
    let n = usize::from(first & 0x0f).min(rest.len());
    let (steps, body) = rest.split_at(n);
    let mut chunks = Vec::with_capacity(n + 1);
    let mut at = 0;
    for &step in steps {
        let end = (at + usize::from(step)).min(body.len());
        chunks.push(&body[at..end]);
        at = end;
    }
    chunks.push(&body[at..]);
    debug_assert_eq!(chunks.concat(), body);
    (body, chunks)
}

/// A bit of the first byte, free for a target's own choices (bits 4..=6 when not byte by byte).
pub fn flag(data: &[u8], bit: u8) -> bool {
    data.first().is_some_and(|b| b & (1 << bit) != 0)
}

/// Everything a [`Visitor`] hears, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Value(Vec<u8>, Kind, Vec<u8>),
    Start,
    End,
    Abort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Raw,
    Container,
}

/// Asserts the events nest: values only inside an object, which starts once and then ends or
/// is abandoned once.
pub fn assert_well_nested(events: &[Event]) {
    let mut open = false;
    for e in events {
        match e {
            Event::Start => assert!(!open, "object started inside an object"),
            Event::Value(..) | Event::End | Event::Abort => {
                assert!(open, "{e:?} outside an object")
            }
        }
        open = matches!(e, Event::Start | Event::Value(..));
    }
}

/// Logs every event; asks for keys by their first byte (so some keys at every depth are wanted
/// and some are not); with `stop_after_first`, is satisfied once a top-level object ended.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<Event>,
    pub stop_after_first: bool,
}

impl Visitor for Log {
    fn key_id(&self, path: &[u8], key: &[u8]) -> u8 {
        assert!(path.len() < MAX_PATH, "key asked below MAX_PATH");
        assert!(key.len() <= CAP, "key longer than CAP");
        match key.first() {
            None => 1,
            Some(b) => b % 4,
        }
    }

    fn value(&mut self, path: &[u8], value: Value<'_>) {
        assert!(!path.is_empty() && path.len() <= MAX_PATH, "path {path:?}");
        assert_ne!(path[path.len() - 1], 0, "value of an unwanted key");
        let (kind, bytes) = match value {
            Value::Str(s) => (Kind::Str, s),
            Value::Raw(r) => {
                assert!(!r.is_empty(), "empty raw value");
                (Kind::Raw, r)
            }
            Value::Container => (Kind::Container, &b""[..]),
        };
        assert!(bytes.len() <= CAP, "value longer than CAP");
        self.events
            .push(Event::Value(path.to_vec(), kind, bytes.to_vec()));
    }

    fn start_object(&mut self) {
        self.events.push(Event::Start);
    }

    fn end_object(&mut self) {
        self.events.push(Event::End);
    }

    fn abort_object(&mut self) {
        self.events.push(Event::Abort);
    }

    fn satisfied(&self) -> bool {
        self.stop_after_first && self.events.contains(&Event::End)
    }
}
