use super::*;
use crate::push::proto::{Label, Sample, TimeSeries};
use crate::push::wire::Encoded;

/// `n` series of one sample each, stamped `ts`, value `i`; the second has two samples.
fn snapshot(ts: i64, n: usize) -> Encoded {
    let series: Vec<TimeSeries> = (0..n)
        .map(|i| TimeSeries {
            labels: vec![Label::new("__name__", format!("m{i}"))],
            samples: (0..if i == 1 { 2 } else { 1 })
                .map(|k| Sample {
                    value: i as f64,
                    timestamp: ts + k,
                })
                .collect(),
        })
        .collect();
    Encoded::from_series(&series)
}

/// Two records, of 3 and 4 series.
fn two_records() -> (Vec<u8>, [Encoded; 2]) {
    let snaps = [snapshot(1_000, 3), snapshot(2_000, 4)];
    let mut buf = Vec::new();
    let mut writer = RecordWriter::new();
    for (ts, s) in [1_000, 2_000].into_iter().zip(&snaps) {
        writer.write(&mut buf, ts, s.entries());
    }
    (buf, snaps)
}

fn same(a: &[Entry], b: &[Entry]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.bytes == y.bytes && x.samples == y.samples)
}

fn read(buf: &[u8], meta: &Meta) -> Option<Vec<Entry>> {
    let start = meta.offset as usize + HEADER;
    entries(meta, &buf[start..start + meta.len as usize])
}

#[test]
fn records_read_back_as_the_series_written() {
    let (buf, snaps) = two_records();
    let scan = scan(&buf);
    assert_eq!((scan.lost_bytes, scan.lost_samples), (0, 0));
    assert_eq!(scan.records.len(), 2);
    assert_eq!(
        (
            scan.records[0].samples,
            scan.records[0].series,
            scan.records[0].ts_ms
        ),
        (4, 3, 1_000)
    );
    assert_eq!(scan.records[1].offset, scan.records[0].size());
    for (meta, snap) in scan.records.iter().zip(&snaps) {
        assert!(same(&read(&buf, meta).unwrap(), snap.entries()));
    }
}

#[test]
fn a_file_cut_at_any_byte_keeps_every_whole_record_and_counts_the_rest() {
    let (buf, _) = two_records();
    let first = scan(&buf).records[0];
    for cut in 0..=buf.len() {
        let s = scan(&buf[..cut]);
        let whole = if cut == buf.len() {
            2
        } else {
            usize::from(cut >= first.size() as usize)
        };
        assert_eq!(s.records.len(), whole, "cut at {cut}");
        let kept: u64 = s.records.iter().map(Meta::size).sum();
        assert_eq!(kept + s.lost_bytes, cut as u64, "cut at {cut}");
        // A record cut after its header counts its samples as lost.
        let into = if cut < first.size() as usize {
            cut
        } else {
            cut - first.size() as usize
        };
        let lost = if cut == buf.len() || cut == first.size() as usize || into < HEADER {
            0
        } else if cut < first.size() as usize {
            4
        } else {
            5
        };
        assert_eq!(s.lost_samples, lost, "cut at {cut}");
        for meta in &s.records {
            assert!(read(&buf, meta).is_some());
        }
    }
}

#[test]
fn a_flipped_byte_anywhere_loses_at_most_its_record_and_never_yields_a_damaged_one() {
    let (buf, snaps) = two_records();
    let first = scan(&buf).records[0].size() as usize;
    for at in 0..buf.len() {
        let mut bad = buf.clone();
        bad[at] ^= 0x40;
        let s = scan(&bad);
        let kept: u64 = s.records.iter().map(Meta::size).sum();
        assert_eq!(kept + s.lost_bytes, buf.len() as u64, "flip at {at}");
        assert_eq!(
            s.records.len(),
            1,
            "flip at {at}: the other record survives"
        );
        let (damaged, within) = if at < first { (0, at) } else { (1, at - first) };
        let survivor = &s.records[0];
        assert!(same(
            &read(&bad, survivor).unwrap(),
            snaps[1 - damaged].entries()
        ));
        // A damaged header hides the record's samples; a damaged payload does not.
        let samples = [4, 5][damaged];
        let lost = if within < HEADER { 0 } else { samples };
        assert_eq!(s.lost_samples, lost, "flip at {at}");
    }
}

#[test]
fn entries_refuse_a_payload_that_does_not_match_its_header() {
    let (buf, _) = two_records();
    let meta = scan(&buf).records[0];
    let start = HEADER;
    let mut payload = buf[start..start + meta.len as usize].to_vec();
    assert!(entries(&meta, &payload).is_some());
    payload[3] ^= 1;
    assert!(entries(&meta, &payload).is_none());
    payload.pop();
    assert!(entries(&meta, &payload).is_none());
}

#[test]
fn garbage_before_and_between_records_is_skipped_and_counted() {
    let (buf, _) = two_records();
    let first = scan(&buf).records[0].size() as usize;
    let mut messy = b"xxOTQ1yy".to_vec();
    messy.extend_from_slice(&buf[..first]);
    messy.extend_from_slice(b"OTQ");
    messy.extend_from_slice(&buf[first..]);
    let s = scan(&messy);
    assert_eq!(s.records.len(), 2);
    assert_eq!(s.lost_bytes, 11);
    assert_eq!(s.lost_samples, 0);
}
