//! The disk queue's files: a directory per writer URL holding `lock`, `cursor` and the
//! segments `<id>.seg`; opening it again after a stop or a crash.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{age_ms, segment_bytes, DiskQueue, Losses, Segment};
use crate::push::record::{self, Meta, HEADER};

const SEGMENT_EXT: &str = "seg";
const CURSOR: &str = "cursor";
const LOCK: &str = "lock";

/// What opening found that could not be sent: the rest was kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Samples waiting from before the start.
    pub(crate) samples: u64,
    /// Bytes that belong to no readable record, and the samples of records that did not
    /// check out (what a crash tore or a damaged disk flipped).
    pub(crate) lost_bytes: u64,
    pub(crate) lost_samples: u64,
}

/// The directory of a writer's queue under `base`: its URL made a file name (letters,
/// digits, `.` and `-` kept, the rest `_`, at most 64 of them) and a hash of the whole URL, so
/// that two URLs never share one and the operator can tell which is which.
pub(crate) fn dir_for(base: &Path, url: &str) -> PathBuf {
    let readable: String = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    let hash: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    base.join(format!("{readable}-{hash}"))
}

// === impl DiskQueue ===

impl DiskQueue {
    /// Opens (or creates) the queue in `dir`: every segment is scanned, what checks out and
    /// was not sent yet is queued again, oldest first. Fails only when the directory cannot
    /// be created, written or locked; a damaged queue is never a reason not to start.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        max_age: Duration,
    ) -> io::Result<(DiskQueue, Recovery)> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| match e {
                rustix::io::Errno::WOULDBLOCK => {
                    io::Error::other("in use by another running ollama-tap")
                }
                e => io::Error::from(e),
            },
        )?;
        let cursor = read_cursor(dir);
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut head_done = 0;
        for id in segment_ids(dir)? {
            let bytes = fs::read(segment_path(dir, id))?;
            let scan = record::scan(&bytes);
            recovery.lost_bytes += scan.lost_bytes;
            recovery.lost_samples += scan.lost_samples;
            let mut records: VecDeque<Meta> = scan.records.into();
            if let Some((cid, offset, done)) = cursor {
                if id < cid {
                    records.clear();
                } else if id == cid {
                    records.retain(|m| m.offset >= offset);
                    if records.front().is_some_and(|m| m.offset == offset) {
                        head_done = done;
                    }
                }
            }
            if records.is_empty() {
                let _ = fs::remove_file(segment_path(dir, id));
                continue;
            }
            segments.push_back(Segment {
                id,
                size: bytes.len() as u64,
                records,
            });
        }
        let next = segments.back().map_or(1, |s: &Segment| s.id + 1);
        let active = create_segment(dir, next)?;
        segments.push_back(Segment {
            id: next,
            size: 0,
            records: VecDeque::new(),
        });
        let mut queue = DiskQueue {
            dir: dir.to_owned(),
            _lock: lock,
            bytes: segments.iter().map(|s| s.size).sum(),
            samples: segments
                .iter()
                .flat_map(|s| &s.records)
                .map(|m| u64::from(m.samples))
                .sum(),
            segments,
            active,
            max_bytes,
            segment_bytes: segment_bytes(max_bytes),
            max_age_ms: age_ms(max_age),
            head_done: 0,
            head_done_samples: 0,
            loaded: VecDeque::new(),
            pinned: None,
            losses: Losses::default(),
            buf: Vec::new(),
            writer: record::RecordWriter::new(),
        };
        queue.skip_sent(head_done);
        queue.losses.corrupt += recovery.lost_samples;
        recovery.samples = queue.samples;
        Ok((queue, recovery))
    }

    /// Skips the first `done` series of the oldest record: they were sent before the stop.
    fn skip_sent(&mut self, done: usize) {
        if done == 0 {
            return;
        }
        let samples = match self.load(0) {
            Some(entries) if done <= entries.len() => {
                entries[..done].iter().map(|e| e.samples as u64).sum()
            }
            _ => return,
        };
        self.head_done = done;
        self.head_done_samples = samples;
        self.samples -= samples;
    }
}

/// Creates segment `id` for appending, and makes its name durable.
pub(super) fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, id))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

pub(super) fn remove_segment(dir: &Path, id: u64) {
    let _ = fs::remove_file(segment_path(dir, id));
}

/// The payload of the record `meta` in segment `id`.
pub(super) fn read_record(dir: &Path, id: u64, meta: &Meta) -> io::Result<Vec<u8>> {
    let file = File::open(segment_path(dir, id))?;
    let mut payload = vec![0; meta.len as usize];
    file.read_exact_at(&mut payload, meta.offset + HEADER as u64)?;
    Ok(payload)
}

/// Records where sending resumes (`None`: the queue is empty); a failure only means that a
/// restart sends some batches again.
pub(super) fn write_cursor(dir: &Path, cursor: Option<(u64, u64, usize)>) {
    let path = dir.join(CURSOR);
    let Some((id, offset, done)) = cursor else {
        let _ = fs::remove_file(path);
        return;
    };
    let tmp = dir.join("cursor.tmp");
    if fs::write(&tmp, format!("{id} {offset} {done}\n")).is_ok() {
        let _ = fs::rename(tmp, path);
    }
}

fn read_cursor(dir: &Path) -> Option<(u64, u64, usize)> {
    let text = fs::read_to_string(dir.join(CURSOR)).ok()?;
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    let (id, offset, done) = (
        words.next()?.ok()?,
        words.next()?.ok()?,
        words.next()?.ok()?,
    );
    Some((id, offset, done as usize))
}

fn segment_ids(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == SEGMENT_EXT).then_some(())?;
            path.file_stem()?.to_str()?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{SEGMENT_EXT}"))
}
