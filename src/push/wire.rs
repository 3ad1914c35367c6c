//! The request body on the wire: series written as protobuf straight from the snapshot, and
//! the body snappy-compressed (block format) with buffers that are kept between requests.
//!
//! Building `TimeSeries` structs first costs two `String`s per label per series, freed again
//! right after encoding: most of the time of a 10,000-series push. So a snapshot is encoded
//! once, from [`LabelSet`]s that borrow the snapshot, into one buffer; each series becomes an
//! [`Entry`], its own `WriteRequest.timeseries` field. A `WriteRequest` is nothing but that
//! repeated field, so the body of a request is the concatenation of any run of entries, and
//! a writer's queue can batch, drop and retry series one by one without re-encoding them.
//!
//! The bytes are the ones prost gives for the same `WriteRequest` (`push/reference.rs` checks
//! them against the original encoder, structs then prost): proto3 leaves out a field at its
//! default (an empty string, a `0.0` or `-0.0` value, a `0` timestamp), never a message field.

use bytes::Bytes;
use prost::encoding::{encode_varint, encoded_len_varint, WireType};
use prost::Message;

use super::encode::{for_each_series, LabelSet};
use super::proto::{TimeSeries, WriteRequest};
use crate::snapshot::Family;

/// A field's key, `field number << 3 | wire type`: one byte, as every field number here is
/// below 16.
const fn key(field: u32, wire_type: WireType) -> u8 {
    assert!(field < 16, "a one-byte key");
    (field << 3 | wire_type as u32) as u8
}

/// `WriteRequest.timeseries`'s field number, also for prost's own encoding of a struct.
const TIMESERIES_FIELD: u32 = 1;

// The keys of the fields of proto/remote.proto (proto.rs's schema test pins the file).
const WRITE_REQUEST_TIMESERIES: u8 = key(TIMESERIES_FIELD, WireType::LengthDelimited);
const TIMESERIES_LABELS: u8 = key(1, WireType::LengthDelimited);
const TIMESERIES_SAMPLES: u8 = key(2, WireType::LengthDelimited);
const LABEL_NAME: u8 = key(1, WireType::LengthDelimited);
const LABEL_VALUE: u8 = key(2, WireType::LengthDelimited);
const SAMPLE_VALUE: u8 = key(1, WireType::SixtyFourBit);
const SAMPLE_TIMESTAMP: u8 = key(2, WireType::Varint);

/// Bytes a series takes besides its names and values, about: keys and lengths of the entry,
/// of `__name__` and of the sample, and the sample itself. Only sizes the buffer.
const SERIES_OVERHEAD: usize = 3 + 6 + 8 + 2 + 9 + 11;
/// Bytes a label takes besides its name and value, about: three keys and three lengths.
const LABEL_OVERHEAD: usize = 6;

/// A run of series encoded once, shared by every writer's queue: an entry's bytes are a
/// reference-counted slice of one buffer, so a clone copies no series, and the buffer is
/// freed when its last series has left every queue.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    entries: Vec<Entry>,
}

/// One series, encoded as a whole `WriteRequest.timeseries` field (key, length, message).
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(crate) bytes: Bytes,
    /// Samples in the series (what queue capacities and counters measure).
    pub(crate) samples: usize,
}

/// Snappy block compression with its hash table and output buffer kept between requests.
#[derive(Debug)]
pub struct Compressor {
    encoder: snap::raw::Encoder,
    out: Vec<u8>,
}

// === impl Encoded ===

impl Encoded {
    /// One snapshot, as [`super::encode_families`] would give it (same series, same bytes),
    /// every sample at `ts_ms`.
    pub fn from_families(families: &[Family], ts_ms: i64) -> Encoded {
        let mut buf = Vec::with_capacity(size_hint(families));
        let mut ends = Vec::with_capacity(families.iter().map(|f| f.series.len()).sum());
        for_each_series(families, |set, value| {
            write_series(&mut buf, set, value, ts_ms);
            ends.push((buf.len(), 1));
        });
        Encoded::split(buf, &ends)
    }

    /// Series that are already structs, encoded by prost itself.
    pub fn from_series(series: &[TimeSeries]) -> Encoded {
        let mut buf = Vec::new();
        let mut ends = Vec::with_capacity(series.len());
        for ts in series {
            prost::encoding::message::encode(TIMESERIES_FIELD, ts, &mut buf);
            ends.push((buf.len(), ts.sample_count()));
        }
        Encoded::split(buf, &ends)
    }

    /// Cuts `buf` into entries ending at the given offsets, with their sample counts.
    fn split(buf: Vec<u8>, ends: &[(usize, usize)]) -> Encoded {
        let buf = Bytes::from(buf);
        let mut start = 0;
        let entries = ends
            .iter()
            .map(|&(end, samples)| {
                let bytes = buf.slice(start..end);
                start = end;
                Entry { bytes, samples }
            })
            .collect();
        Encoded { entries }
    }

    /// Number of series.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends every series in order: the protobuf body of one `WriteRequest` holding them
    /// all (what a writer's queue does for the series of one batch).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            out.extend_from_slice(&e.bytes);
        }
    }

    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// About the encoded size of `families`, so that the buffer is allocated once, not doubled
/// twenty times on the way to a few megabytes.
fn size_hint(families: &[Family]) -> usize {
    let series = |family: &Family, s: &crate::snapshot::Series| {
        let labels: usize = s.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
        let names = family.name.len() + s.suffix.len() + labels;
        names + SERIES_OVERHEAD + LABEL_OVERHEAD * s.labels.len()
    };
    let family = |f: &Family| f.series.iter().map(|s| series(f, s)).sum::<usize>();
    families.iter().map(family).sum()
}

/// Appends one series as a `WriteRequest.timeseries` field: its labels in `set`'s order and
/// one sample. Every length is computed before its message is written.
fn write_series(buf: &mut Vec<u8>, set: &LabelSet<'_>, value: f64, ts_ms: i64) {
    let sample = sample_len(value, ts_ms);
    let labels: usize = set
        .pairs()
        .iter()
        .map(|p| field_len(label_len(p.name.len(), p.value_len())))
        .sum();
    let series = labels + field_len(sample);
    write_head(buf, WRITE_REQUEST_TIMESERIES, series);
    for p in set.pairs() {
        let value_len = p.value_len();
        let label = label_len(p.name.len(), value_len);
        write_head(buf, TIMESERIES_LABELS, label);
        if !p.name.is_empty() {
            write_head(buf, LABEL_NAME, p.name.len());
            buf.extend_from_slice(p.name.as_bytes());
        }
        if value_len > 0 {
            write_head(buf, LABEL_VALUE, value_len);
            buf.extend_from_slice(p.value.as_bytes());
            buf.extend_from_slice(p.value_tail.as_bytes());
        }
    }
    write_head(buf, TIMESERIES_SAMPLES, sample);
    if value != 0.0 {
        buf.push(SAMPLE_VALUE);
        buf.extend_from_slice(&value.to_le_bytes());
    }
    if ts_ms != 0 {
        buf.push(SAMPLE_TIMESTAMP);
        encode_varint(ts_ms as u64, buf);
    }
}

/// A length-delimited field's key and length (the length written inline when it takes one
/// byte, as most do).
fn write_head(buf: &mut Vec<u8>, key: u8, len: usize) {
    buf.push(key);
    if len < 0x80 {
        buf.push(len as u8);
    } else {
        encode_varint(len as u64, buf);
    }
}

/// Encoded size of a length-delimited field (one-byte key) of `len` bytes: a message field is
/// written even when empty.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Encoded size of a string field of `len` bytes: nothing when empty, as proto3 does.
fn string_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        field_len(len)
    }
}

fn label_len(name_len: usize, value_len: usize) -> usize {
    string_len(name_len) + string_len(value_len)
}

fn sample_len(value: f64, ts_ms: i64) -> usize {
    let value = if value != 0.0 { 1 + 8 } else { 0 };
    let ts = if ts_ms != 0 {
        1 + encoded_len_varint(ts_ms as u64)
    } else {
        0
    };
    value + ts
}

// === impl Compressor ===

impl Compressor {
    pub fn new() -> Compressor {
        Compressor {
            encoder: snap::raw::Encoder::new(),
            out: Vec::new(),
        }
    }

    /// `raw` in snappy's block format (never the framed format), valid until the next call.
    /// The output buffer grows to the largest body seen and is zeroed only when it grows.
    pub fn compress(&mut self, raw: &[u8]) -> &[u8] {
        let max = snap::raw::max_compress_len(raw.len());
        if self.out.len() < max {
            self.out.resize(max, 0);
        }
        let n = self
            .encoder
            .compress(raw, &mut self.out)
            .expect("a remote-write batch is far below snappy's 4 GiB block limit");
        &self.out[..n]
    }
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new()
    }
}

/// The request as protobuf, compressed with snappy's block format (never the framed format).
pub fn compress(request: &WriteRequest) -> Vec<u8> {
    Compressor::new()
        .compress(&request.encode_to_vec())
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::encode_families;
    use crate::push::proto::{Label, Sample};
    use crate::snapshot::Kind;

    fn gauge(pairs: &[(&str, &str)], value: f64) -> Family {
        let mut f = Family::new("g", "", Kind::Gauge);
        let labels = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into()));
        f.push("", labels.collect(), value);
        f
    }

    fn body(e: &Encoded) -> Vec<u8> {
        let mut out = Vec::new();
        e.write_to(&mut out);
        out
    }

    #[test]
    fn compress_uses_the_snappy_block_format() {
        let req = WriteRequest {
            timeseries: encode_families(&[gauge(&[("a", "b")], 1.0)], 5),
        };
        let body = compress(&req);
        // The block format starts with the uncompressed length as a varint (the framed format
        // would start with the stream identifier chunk ff 06 00 00 "sNaPpY").
        let len = req.encoded_len();
        assert!(len < 128, "one varint byte: {len}");
        assert_eq!(body[0], len as u8);
        assert_eq!(snap::raw::decompress_len(&body).unwrap(), len);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(&*raw).unwrap(), req);
    }

    #[test]
    fn a_reused_compressor_gives_what_a_fresh_encoder_gives() {
        let big = vec![gauge(&[("model", "m"), ("le", "+Inf")], 2.5); 20_000];
        let inputs = [
            body(&Encoded::from_families(&big, 7)),
            Vec::new(),
            b"short".to_vec(),
            body(&Encoded::from_families(&big[..3], 8)),
        ];
        let mut c = Compressor::new();
        for raw in &inputs {
            let fresh = snap::raw::Encoder::new().compress_vec(raw).unwrap();
            assert_eq!(c.compress(raw), fresh, "{} bytes", raw.len());
        }
    }

    #[test]
    fn each_entry_is_one_series_and_the_entries_make_the_request() {
        let snapshot = [gauge(&[("b", "2"), ("a", "1")], 3.0), gauge(&[], 0.0)];
        let e = Encoded::from_families(&snapshot, 42);
        let series = encode_families(&snapshot, 42);
        assert_eq!(e.len(), 2);
        for (entry, ts) in e.entries().iter().zip(&series) {
            assert_eq!(entry.samples, 1);
            let one = WriteRequest {
                timeseries: vec![ts.clone()],
            };
            assert_eq!(entry.bytes, one.encode_to_vec());
        }
        let req = WriteRequest { timeseries: series };
        assert_eq!(body(&e), req.encode_to_vec());
        assert_eq!(body(&Encoded::from_series(&req.timeseries)), body(&e));
    }

    #[test]
    fn from_series_keeps_each_series_sample_count() {
        let sample = |timestamp| Sample {
            value: 1.0,
            timestamp,
        };
        let series = [
            TimeSeries {
                labels: vec![Label::new("__name__", "a")],
                samples: vec![sample(1), sample(2)],
            },
            TimeSeries {
                labels: vec![Label::new("__name__", "b")],
                samples: Vec::new(),
            },
        ];
        let e = Encoded::from_series(&series);
        let counts: Vec<usize> = e.entries().iter().map(|x| x.samples).collect();
        assert_eq!(counts, [2, 0]);
        let decoded = WriteRequest::decode(&*body(&e)).unwrap();
        assert_eq!(decoded.timeseries, series);
    }

    #[test]
    fn the_size_hint_covers_a_snapshot_of_the_agents_shape() {
        let mut f = Family::new("ollama_request_duration_seconds", "", Kind::Histogram);
        for le in ["0.01", "1.28", "+Inf"] {
            let pairs = [("agent_hostname", "h"), ("le", le), ("model", "llama3:8b")];
            let labels = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into()));
            f.push("_bucket", labels.collect(), 1e9);
        }
        let families = [f];
        let len = body(&Encoded::from_families(&families, 1_700_000_000_000)).len();
        let hint = size_hint(&families);
        assert!(
            len <= hint && hint <= len + len / 4,
            "{len} bytes, hint {hint}"
        );
    }

    #[test]
    fn defaults_are_left_out_as_prost_does() {
        // -0.0 == 0.0, so prost leaves it out too; a 0 timestamp is left out; NaN is not.
        for (value, ts) in [
            (0.0, 0),
            (-0.0, 0),
            (f64::NAN, 0),
            (1.0, -1),
            (0.0, i64::MIN),
        ] {
            let snapshot = [gauge(&[("x", "ü")], value)];
            let req = WriteRequest {
                timeseries: encode_families(&snapshot, ts),
            };
            let e = Encoded::from_families(&snapshot, ts);
            assert_eq!(body(&e), req.encode_to_vec(), "{value} @ {ts}");
        }
    }
}
