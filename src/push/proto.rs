//! The four remote-write 1.0 protobuf messages, as hand-written prost structs.
//!
//! The schema of record is `proto/remote.proto`; these structs carry the same field numbers and
//! types. They are written by hand, not generated, because:
//! - no `protoc`, `protox` or `build.rs` is needed to build the crate;
//! - the messages are four tiny structs that will not change (remote-write 1.0 is frozen);
//! - `tests::golden_bytes_match_the_wire_format` pins the encoding byte for byte, against a
//!   vector derived by hand from `proto/remote.proto` and the protobuf wire format, and
//!   `tests/decode_remote_write.py` decodes an agent-encoded body with Python's `protobuf`, its
//!   message classes built from `proto/remote.proto` itself.
//!
//! proto3 leaves fields at their default out of the encoding (a `0.0` value, a `0` timestamp,
//! an empty string), exactly as Prometheus's gogoproto `prompb` does.

/// `prometheus.WriteRequest`: the body of one push (before snappy).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one label set and its samples, in timestamp order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`: one `name="value"` pair.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value at a timestamp in milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

// === impl Label ===

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

// === impl TimeSeries ===

impl TimeSeries {
    /// Number of samples (what queue capacities and counters measure).
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Two series: `up{job="x"} 1 @1700000000000` and `z 0 @1700000000000`.
    fn golden_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![Label::new("__name__", "up"), Label::new("job", "x")],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1_700_000_000_000,
                    }],
                },
                TimeSeries {
                    labels: vec![Label::new("__name__", "z")],
                    samples: vec![Sample {
                        value: 0.0,
                        timestamp: 1_700_000_000_000,
                    }],
                },
            ],
        }
    }

    /// Derived by hand. A key byte is `field << 3 | wire type` (0 varint, 1 fixed64,
    /// 2 length-delimited). 1_700_000_000_000 = 0x18B_CFE5_6800; its 7-bit groups, low first,
    /// are 00 50 15 7F 3C 31, so the varint is 80 D0 95 FF BC 31. 1.0 as a little-endian
    /// double is 00 00 00 00 00 00 F0 3F. Cross-checked with Python's protobuf 7.36
    /// (`SerializeToString` of the same message built from proto/remote.proto).
    #[rustfmt::skip]
    const GOLDEN: &[u8] = &[
        0x0a, 0x2c,                                     // WriteRequest.timeseries (1, len 44)
          0x0a, 0x0e,                                   //   TimeSeries.labels (1, len 14)
            0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // name "__name__"
            0x12, 0x02, b'u', b'p',                     //     value "up"
          0x0a, 0x08,                                   //   TimeSeries.labels (1, len 8)
            0x0a, 0x03, b'j', b'o', b'b',               //     name "job"
            0x12, 0x01, b'x',                           //     value "x"
          0x12, 0x10,                                   //   TimeSeries.samples (2, len 16)
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, // value 1.0 (1, fixed64)
            0x10, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31,   //     timestamp (2, varint)
        0x0a, 0x18,                                     // WriteRequest.timeseries (1, len 24)
          0x0a, 0x0d,                                   //   TimeSeries.labels (1, len 13)
            0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // name "__name__"
            0x12, 0x01, b'z',                           //     value "z"
          0x12, 0x07,                                   //   TimeSeries.samples (2, len 7)
                                                        //     value 0.0: default, omitted
            0x10, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31,   //     timestamp (2, varint)
    ];

    #[test]
    fn golden_bytes_match_the_wire_format() {
        assert_eq!(golden_request().encode_to_vec(), GOLDEN);
    }

    #[test]
    fn golden_bytes_decode_to_the_same_request() {
        assert_eq!(WriteRequest::decode(GOLDEN).unwrap(), golden_request());
    }

    #[test]
    fn negative_timestamps_and_special_values_round_trip() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "ünïcode"), Label::new("a", "")],
                samples: vec![
                    Sample {
                        value: f64::INFINITY,
                        timestamp: -1,
                    },
                    Sample {
                        value: f64::NEG_INFINITY,
                        timestamp: 0,
                    },
                    Sample {
                        value: -2.5,
                        timestamp: i64::MAX,
                    },
                ],
            }],
        };
        assert_eq!(WriteRequest::decode(&*req.encode_to_vec()).unwrap(), req);
    }

    #[test]
    fn schema_file_declares_the_fields_these_structs_encode() {
        let schema = include_str!("../../proto/remote.proto");
        let fields: Vec<String> = schema
            .lines()
            .map(|l| l.split("//").next().unwrap_or("").trim())
            .filter(|l| l.ends_with(';') && l.contains(" = ") && !l.starts_with("syntax"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            fields,
            [
                "repeated TimeSeries timeseries = 1;",
                "repeated Label labels = 1;",
                "repeated Sample samples = 2;",
                "string name = 1;",
                "string value = 2;",
                "double value = 1;",
                "int64 timestamp = 2;",
            ],
            "proto/remote.proto changed: update src/push/proto.rs and its golden bytes"
        );
    }
}
