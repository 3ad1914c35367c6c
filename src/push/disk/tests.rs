use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prost::Message;

use super::*;
use crate::push::proto::{Label, Sample, TimeSeries, WriteRequest};

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ollama-tap-disk-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

use std::fs;

const MB: u64 = 1 << 20;

/// `len` letters that snappy cannot shrink (xorshift from `seed`).
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// A snapshot of `n` one-sample series `m{i}` stamped `ts`, value `i`, with a label of `pad`
/// random letters (so the record's size on disk is about the label's).
fn snapshot(ts: i64, n: usize, pad: usize) -> Encoded {
    let series: Vec<TimeSeries> = (0..n)
        .map(|i| TimeSeries {
            labels: vec![
                Label::new("__name__", format!("m{i}")),
                Label::new("pad", noise(ts as u64 * 1000 + i as u64, pad)),
            ],
            samples: vec![Sample {
                value: i as f64,
                timestamp: ts,
            }],
        })
        .collect();
    Encoded::from_series(&series)
}

fn open(dir: &TempDir, max_bytes: u64, max_age: Duration) -> (DiskQueue, Recovery) {
    DiskQueue::open(&dir.0, max_bytes, max_age).unwrap()
}

/// A queue (1 MB, no age limit) holding three snapshots of four series, at 1, 2 and 3.
fn three_snapshots(dir: &TempDir) -> DiskQueue {
    let (mut q, _) = open(dir, MB, Duration::ZERO);
    for ts in 1..=3 {
        q.push(&snapshot(ts, 4, 0), ts).unwrap();
    }
    q
}

/// Pins a batch, decodes it, and commits it: (name, timestamp) of every series sent.
fn send(q: &mut DiskQueue, max: usize) -> Vec<(String, i64)> {
    let mut body = Vec::new();
    let pinned = q.pin_batch(max, &mut body);
    let batch = WriteRequest::decode(&*body).unwrap().timeseries;
    assert_eq!(pinned.series, batch.len());
    q.commit();
    batch
        .iter()
        .map(|t| (t.labels[0].value.clone(), t.samples[0].timestamp))
        .collect()
}

/// Everything left, in batches of `max`.
fn drain(q: &mut DiskQueue, max: usize) -> Vec<(String, i64)> {
    let mut all = Vec::new();
    loop {
        let batch = send(q, max);
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn expected(stamps: &[i64], n: usize) -> Vec<(String, i64)> {
    stamps
        .iter()
        .flat_map(|&ts| (0..n).map(move |i| (format!("m{i}"), ts)))
        .collect()
}

fn segments(dir: &TempDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn batches_come_out_oldest_first_across_records_and_the_queue_empties() {
    let dir = TempDir::new();
    let mut q = three_snapshots(&dir);
    assert_eq!(q.samples(), 12);
    assert!(q.bytes() > 0);
    assert_eq!(drain(&mut q, 5), expected(&[1, 2, 3], 4));
    assert_eq!(q.samples(), 0);
    assert_eq!(q.take_losses(), Losses::default());
}

#[test]
fn a_restart_resumes_where_the_last_accepted_batch_ended() {
    let dir = TempDir::new();
    let mut q = three_snapshots(&dir);
    // Six series accepted: all of the first record, two of the second.
    assert_eq!(
        send(&mut q, 6),
        expected(&[1], 4)
            .into_iter()
            .chain(expected(&[2], 2))
            .collect::<Vec<_>>()
    );
    // A batch in flight when the agent stops is sent again.
    let mut body = Vec::new();
    q.pin_batch(3, &mut body);
    drop(q);
    let (mut q, recovery) = open(&dir, MB, Duration::ZERO);
    assert_eq!(
        recovery,
        Recovery {
            samples: 6,
            lost_bytes: 0,
            lost_samples: 0
        }
    );
    assert_eq!(q.samples(), 6);
    let rest: Vec<_> = expected(&[2], 4)
        .into_iter()
        .skip(2)
        .chain(expected(&[3], 4))
        .collect();
    assert_eq!(drain(&mut q, 4), rest);
    drop(q);
    let (q, recovery) = open(&dir, MB, Duration::ZERO);
    assert_eq!((q.samples(), recovery.samples), (0, 0));
    assert_eq!(
        segments(&dir).len(),
        1,
        "only the new, empty segment is left"
    );
}

#[test]
fn new_snapshots_after_a_restart_come_after_the_old_ones() {
    let dir = TempDir::new();
    let (mut q, _) = open(&dir, MB, Duration::ZERO);
    q.push(&snapshot(1, 2, 0), 1).unwrap();
    drop(q);
    let (mut q, _) = open(&dir, MB, Duration::ZERO);
    q.push(&snapshot(2, 2, 0), 2).unwrap();
    assert_eq!(drain(&mut q, 100), expected(&[1, 2], 2));
}

#[test]
fn a_torn_tail_is_counted_and_the_records_before_it_are_sent() {
    let dir = TempDir::new();
    drop(three_snapshots(&dir)); // closed: its files are what a restart finds
    let file = &segments(&dir)[0];
    let len = fs::metadata(file).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(file).unwrap();
    f.set_len(len - 5).unwrap();
    let (mut q, recovery) = open(&dir, MB, Duration::ZERO);
    assert_eq!((recovery.samples, recovery.lost_samples), (8, 4));
    assert_eq!(q.take_losses().corrupt, 4);
    assert_eq!(drain(&mut q, 100), expected(&[1, 2], 4));
}

#[test]
fn a_flipped_byte_loses_only_its_record() {
    let dir = TempDir::new();
    drop(three_snapshots(&dir)); // closed: its files are what a restart finds
    let file = &segments(&dir)[0];
    let mut bytes = fs::read(file).unwrap();
    let record = bytes.len() / 3;
    bytes[record + record / 2] ^= 0xff; // inside the second record's payload
    fs::write(file, &bytes).unwrap();
    let (mut q, recovery) = open(&dir, MB, Duration::ZERO);
    assert_eq!((recovery.samples, recovery.lost_samples), (8, 4));
    assert_eq!(drain(&mut q, 100), expected(&[1, 3], 4));
}

#[test]
fn past_the_byte_limit_the_oldest_segments_go_and_the_newest_stay() {
    let dir = TempDir::new();
    let max = 256 << 10; // segments of 64 KiB (the smallest)
    let (mut q, _) = open(&dir, max, Duration::ZERO);
    let per = 20; // ~ 2.5 KiB per record
    let snapshots = 400i64;
    for ts in 1..=snapshots {
        q.push(&snapshot(ts, per, 100), ts).unwrap();
        assert!(q.bytes() <= max, "{} bytes at ts {ts}", q.bytes());
    }
    let dropped = q.take_losses().disk_full;
    assert!(dropped > 0);
    let kept = q.samples() as u64;
    assert_eq!(kept + dropped, snapshots as u64 * per as u64);
    let sent = drain(&mut q, 1000);
    let stamps: Vec<i64> = sent.iter().map(|s| s.1).step_by(per).collect();
    let first = snapshots - stamps.len() as i64 + 1;
    assert_eq!(
        stamps,
        (first..=snapshots).collect::<Vec<_>>(),
        "the newest, without a gap"
    );
}

#[test]
fn the_batch_in_flight_is_never_deleted_by_the_byte_limit() {
    let dir = TempDir::new();
    let max = 256 << 10;
    let (mut q, _) = open(&dir, max, Duration::ZERO);
    q.push(&snapshot(1, 20, 100), 1).unwrap();
    let mut body = Vec::new();
    let pinned = q.pin_batch(5, &mut body);
    for ts in 2..=400 {
        q.push(&snapshot(ts, 20, 100), ts).unwrap();
    }
    assert!(q.take_losses().disk_full > 0);
    q.commit();
    let after = drain(&mut q, 10_000);
    assert_eq!(pinned.series, 5);
    assert_eq!(
        &after[..15],
        &expected(&[1], 20)[5..],
        "the rest of the pinned record is kept"
    );
    let stamps: Vec<i64> = after[15..].iter().map(|s| s.1).step_by(20).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert!(
        stamps.windows(2).any(|w| w[1] > w[0] + 1),
        "a gap: what the limit dropped"
    );
    assert_eq!(stamps.last(), Some(&400), "the newest kept");
}

#[test]
fn records_older_than_the_max_age_are_dropped_unsent() {
    let dir = TempDir::new();
    let (mut q, _) = open(&dir, MB, Duration::from_secs(10));
    for ts in [1_000, 5_000, 20_000] {
        q.push(&snapshot(ts, 3, 0), ts).unwrap();
    }
    q.expire(10_500);
    assert_eq!(q.take_losses().too_old, 0);
    q.expire(14_000);
    assert_eq!(q.take_losses().too_old, 3);
    q.expire(14_500);
    assert_eq!(q.take_losses().too_old, 0);
    assert_eq!(drain(&mut q, 100), expected(&[5_000, 20_000], 3));
}

#[test]
fn a_record_half_sent_then_too_old_counts_only_its_unsent_samples() {
    let dir = TempDir::new();
    let (mut q, _) = open(&dir, MB, Duration::from_secs(1));
    q.push(&snapshot(1_000, 4, 0), 1_000).unwrap();
    send(&mut q, 1);
    q.expire(10_000);
    assert_eq!(q.take_losses().too_old, 3);
    assert_eq!(q.samples(), 0);
}

#[test]
fn a_second_agent_cannot_open_a_queue_in_use() {
    let dir = TempDir::new();
    let (_q, _) = open(&dir, MB, Duration::ZERO);
    let e = DiskQueue::open(&dir.0, MB, Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("in use by another"), "{e}");
}

#[test]
fn a_snapshot_larger_than_the_limit_is_refused_and_counted() {
    let dir = TempDir::new();
    let (mut q, _) = open(&dir, 64 << 10, Duration::ZERO);
    assert!(q.push(&snapshot(1, 1000, 100), 1).is_err());
    assert_eq!(q.take_losses().write_error, 1000);
    q.push(&snapshot(2, 2, 0), 2).unwrap();
    assert_eq!(drain(&mut q, 100), expected(&[2], 2));
}

#[test]
fn each_writer_url_has_a_readable_folder_of_its_own() {
    let base = std::path::Path::new("/q");
    let a = dir_for(base, "http://n9e:17000/prometheus/v1/write");
    let b = dir_for(base, "http://n9e:17000/prometheus/v1/write?x");
    assert!(
        a.to_str()
            .unwrap()
            .starts_with("/q/n9e_17000_prometheus_v1_write-"),
        "{a:?}"
    );
    assert_ne!(a, b);
}
