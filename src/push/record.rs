//! The disk queue's record format, and reading it back: pure functions over bytes.
//!
//! A segment file is a run of records, one per queued snapshot (or the part of one that a
//! writer still had to send):
//!
//! ```text
//! magic "OTQ1" | payload len u32 | samples u32 | series u32 | ts_ms i64 | payload crc u32 | header crc u32
//! payload: snappy (block format) of, per series, varint(samples) then the series as one
//!          `WriteRequest.timeseries` field
//! ```
//!
//! Snappy makes a record about a tenth of the protobuf (a snapshot's label sets repeat), so
//! `queue_max_mb` holds ten times the outage, for about a millisecond per 10,000 series.
//!
//! All integers little-endian; the header crc covers the 28 bytes before it, the payload crc
//! the payload (CRC-32, IEEE). A header that checks out is trusted for its length, so a record
//! whose payload was damaged is skipped whole and its samples counted; a damaged header is
//! skipped byte by byte up to the next magic, and those bytes counted. A record cut short by
//! a crash (the file ends inside it) counts as lost. Nothing that does not check out is ever
//! sent.

use bytes::Bytes;
use prost::encoding::{decode_varint, encode_varint};

use super::wire::Entry;

/// Marks the start of every record.
pub(crate) const MAGIC: [u8; 4] = *b"OTQ1";
/// Bytes of a record's header.
pub const HEADER: usize = 32;
/// The first byte of every series: `WriteRequest.timeseries`, length-delimited.
const SERIES_KEY: u8 = 0x0a;

/// What a record's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Where the record starts in its segment.
    pub offset: u64,
    /// The payload's length (the record is `HEADER + len` bytes).
    pub(crate) len: u32,
    pub(crate) samples: u32,
    pub series: u32,
    /// The snapshot's timestamp (milliseconds since the epoch).
    pub(crate) ts_ms: i64,
    pub(crate) payload_crc: u32,
}

/// What [`scan`] found in a segment's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The records that check out, in file order.
    pub records: Vec<Meta>,
    /// Bytes that belong to no readable record (damaged, or cut short).
    pub lost_bytes: u64,
    /// Samples of records whose header checks out but whose payload does not, or is cut short.
    pub(crate) lost_samples: u64,
}

// === impl Meta ===

impl Meta {
    /// The whole record's length.
    pub fn size(&self) -> u64 {
        HEADER as u64 + u64::from(self.len)
    }
}

/// Writes records; keeps its buffer and snappy's hash table between them.
#[derive(Debug)]
pub(super) struct RecordWriter {
    raw: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl RecordWriter {
    pub(super) fn new() -> RecordWriter {
        RecordWriter {
            raw: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }

    /// Appends one record holding `entries` (all stamped `ts_ms`) to `out`.
    pub(super) fn write(&mut self, out: &mut Vec<u8>, ts_ms: i64, entries: &[Entry]) {
        self.raw.clear();
        let mut samples = 0u32;
        for e in entries {
            encode_varint(e.samples as u64, &mut self.raw);
            self.raw.extend_from_slice(&e.bytes);
            samples = samples.saturating_add(e.samples as u32);
        }
        let start = out.len();
        out.resize(
            start + HEADER + snap::raw::max_compress_len(self.raw.len()),
            0,
        );
        let len = self
            .encoder
            .compress(&self.raw, &mut out[start + HEADER..])
            .expect("a buffer of max_compress_len");
        out.truncate(start + HEADER + len);
        let payload_crc = crc32fast::hash(&out[start + HEADER..]);
        let head = &mut out[start..start + HEADER];
        head[..4].copy_from_slice(&MAGIC);
        head[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        head[8..12].copy_from_slice(&samples.to_le_bytes());
        head[12..16].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        head[16..24].copy_from_slice(&ts_ms.to_le_bytes());
        head[24..28].copy_from_slice(&payload_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&head[..28]);
        head[28..32].copy_from_slice(&header_crc.to_le_bytes());
    }
}

/// The header at the start of `bytes`, if it is one that checks out (`offset` is where
/// `bytes` starts in the segment).
pub(crate) fn header(bytes: &[u8], offset: u64) -> Option<Meta> {
    let head = bytes.get(..HEADER)?;
    if head[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap());
    if crc32fast::hash(&head[..28]) != u32_at(28) {
        return None;
    }
    Some(Meta {
        offset,
        len: u32_at(4),
        samples: u32_at(8),
        series: u32_at(12),
        ts_ms: i64::from_le_bytes(head[16..24].try_into().unwrap()),
        payload_crc: u32_at(24),
    })
}

/// Every readable record of a segment, and what could not be read.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(meta) = header(&bytes[at..], at as u64) else {
            // Not a record here: skip to the next magic (or the end) and count the bytes.
            let next =
                memchr::memmem::find(&bytes[at + 1..], &MAGIC).map_or(bytes.len(), |i| at + 1 + i);
            scan.lost_bytes += (next - at) as u64;
            at = next;
            continue;
        };
        let end = at.saturating_add(meta.size() as usize);
        let intact = bytes
            .get(at + HEADER..end)
            .is_some_and(|payload| crc32fast::hash(payload) == meta.payload_crc);
        if intact {
            scan.records.push(meta);
            at = end;
        } else {
            scan.lost_samples += u64::from(meta.samples);
            scan.lost_bytes += (end.min(bytes.len()) - at) as u64;
            at = end.min(bytes.len());
        }
    }
    scan
}

/// The series of a record's payload, as queue entries sharing one buffer; `None` when the
/// payload does not check out against `meta` (then nothing of it may be sent).
pub(super) fn entries(meta: &Meta, payload: &[u8]) -> Option<Vec<Entry>> {
    if payload.len() != meta.len as usize || crc32fast::hash(payload) != meta.payload_crc {
        return None;
    }
    let raw = Bytes::from(snap::raw::Decoder::new().decompress_vec(payload).ok()?);
    let mut out = Vec::with_capacity(meta.series as usize);
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let samples = decode_varint(&mut rest).ok()? as usize;
        let start = raw.len() - rest.len();
        if rest.first() != Some(&SERIES_KEY) {
            return None;
        }
        let mut body = &rest[1..];
        let len = decode_varint(&mut body).ok()? as usize;
        let end = raw.len() - body.len() + len;
        if end > raw.len() {
            return None;
        }
        out.push(Entry {
            bytes: raw.slice(start..end),
            samples,
        });
        rest = &raw[end..];
    }
    (out.len() == meta.series as usize).then_some(out)
}

/// How many series a record's payload holds when it checks out against `meta` (what
/// [`entries`] would give, for the fuzz target); `None` when it does not.
pub fn readable_series(meta: &Meta, payload: &[u8]) -> Option<usize> {
    entries(meta, payload).map(|e| e.len())
}

#[cfg(test)]
#[path = "record/tests.rs"]
mod tests;
