//! One writer's queue on disk (`[writer_opt] queue_dir`): snapshots wait in segment files,
//! oldest first, until the receiver accepts them, across restarts and crashes.
//!
//! - **Append**: a snapshot is one record (`push/record.rs`), written at the end of the
//!   newest segment with one `write` and then `fdatasync`: once [`DiskQueue::push`] returns,
//!   the snapshot survives `kill -9` and a power cut alike.
//! - **Send**: batches are pinned from the oldest record on, read back from the file and
//!   checked against their checksum; [`DiskQueue::commit`] moves the read position past them
//!   and records it in `cursor` (rename, no fsync: a crash may send the last batches again;
//!   delivery is at least once). A segment whose records are all sent is deleted.
//! - **Bounds**: at most `max_bytes` on disk, kept by deleting the oldest segment (never the
//!   one a request in flight reads); a segment is `max_bytes / 16`, so the bound holds to
//!   within one segment while a batch is in flight. Records older than `max_age` are dropped
//!   before they are sent. Every sample dropped is counted by reason ([`Losses`]).
//! - **Start**: every segment is scanned; what does not check out (a torn tail, flipped
//!   bytes) is skipped and counted, the rest is sent. New records go to a new segment.

mod files;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::queue::Pinned;
use super::record::{self, Meta};
use super::wire::{Encoded, Entry};
pub(crate) use files::{dir_for, Recovery};

/// Samples dropped since the last [`DiskQueue::take_losses`], by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Losses {
    /// Deleted, oldest first, to stay under `max_bytes`.
    pub(crate) disk_full: u64,
    /// Older than `max_age` when their turn came.
    pub(crate) too_old: u64,
    /// In records that did not check out (a crash, a damaged disk).
    pub(crate) corrupt: u64,
    /// In snapshots that could not be written (the disk full or failing).
    pub(crate) write_error: u64,
}

/// A writer's queue in a directory of its own.
#[derive(Debug)]
pub(crate) struct DiskQueue {
    dir: PathBuf,
    /// Held (`flock`) while the queue is open: one agent per directory.
    _lock: File,
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    active: File,
    max_bytes: u64,
    segment_bytes: u64,
    max_age_ms: Option<i64>,
    /// Bytes of every segment file.
    bytes: u64,
    /// Samples not yet sent.
    samples: u64,
    /// Series of the oldest record already sent, and their samples.
    head_done: usize,
    head_done_samples: u64,
    /// The oldest records' series, read back for sending (the head first).
    loaded: VecDeque<Vec<Entry>>,
    /// The request in flight.
    pinned: Option<Pin>,
    losses: Losses,
    /// Reused for every record written.
    buf: Vec<u8>,
    writer: record::RecordWriter,
}

/// Where the batch in flight ends: before series `next` of record `rec` (counted from the
/// oldest unsent record); it reads from the first `segments` segments.
#[derive(Clone, Copy, Debug)]
struct Pin {
    rec: usize,
    next: usize,
    segments: usize,
    samples: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    size: u64,
    /// Records not yet sent, oldest first.
    records: VecDeque<Meta>,
}

// === impl DiskQueue ===

impl DiskQueue {
    /// Appends one snapshot, all of it at `ts_ms`. When the disk bound is reached, the oldest
    /// segments go first (counted as `disk_full`); a snapshot that cannot be written at all
    /// is counted as `write_error`, and the error returned for the caller to log.
    pub(crate) fn push(&mut self, snapshot: &Encoded, ts_ms: i64) -> std::io::Result<()> {
        let entries = snapshot.entries();
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.writer.write(&mut buf, ts_ms, entries);
        let result = self.append(&buf);
        self.buf = buf;
        if result.is_err() {
            self.losses.write_error += entries.iter().map(|e| e.samples as u64).sum::<u64>();
        }
        result
    }

    fn append(&mut self, rec: &[u8]) -> std::io::Result<()> {
        let size = rec.len() as u64;
        if size > self.max_bytes {
            return Err(std::io::Error::other(format!(
                "a snapshot of {size} bytes is larger than the queue's limit of {} bytes",
                self.max_bytes
            )));
        }
        let active = self.segments.back().expect("an active segment");
        if active.size > 0 && active.size + size > self.segment_bytes {
            self.roll()?;
        }
        while self.bytes + size > self.max_bytes && self.drop_oldest_segment() {}
        let offset = self.segments.back().expect("an active segment").size;
        let written = self
            .active
            .write_all(rec)
            .and_then(|()| self.active.sync_data());
        if let Err(e) = written {
            // A partial write stays in the file; the next start skips and counts it. New
            // records go after it, to a fresh segment.
            let _ = self.roll();
            return Err(e);
        }
        let meta = record::header(rec, offset).expect("a record just written");
        let active = self.segments.back_mut().expect("an active segment");
        active.size += size;
        active.records.push_back(meta);
        self.bytes += size;
        self.samples += u64::from(meta.samples);
        Ok(())
    }

    /// Starts a new segment; the old one is deleted when nothing of it is left to send.
    fn roll(&mut self) -> std::io::Result<()> {
        let id = self.segments.back().map_or(1, |s| s.id + 1);
        let file = files::create_segment(&self.dir, id)?;
        let old = self.segments.len() - 1;
        self.active = file;
        self.segments.push_back(Segment {
            id,
            size: 0,
            records: VecDeque::new(),
        });
        if self.segments[old].records.is_empty() && !self.is_pinned_segment(old) {
            self.remove_segment(old);
        }
        Ok(())
    }

    /// Deletes the oldest segment that neither is appended to nor holds the batch in flight,
    /// counting its unsent samples; false when there is none.
    fn drop_oldest_segment(&mut self) -> bool {
        let first = self.pinned.map_or(0, |p| p.segments);
        if first + 1 >= self.segments.len() {
            return false;
        }
        let unsent: u64 = self.segments[first]
            .records
            .iter()
            .map(|m| u64::from(m.samples))
            .sum();
        let unsent = if first == 0 {
            unsent - std::mem::take(&mut self.head_done_samples)
        } else {
            unsent
        };
        if first == 0 {
            self.head_done = 0;
        }
        // The records read back beyond those before the deleted segment are stale.
        let before: usize = self
            .segments
            .iter()
            .take(first)
            .map(|s| s.records.len())
            .sum();
        self.loaded.truncate(before);
        self.losses.disk_full += unsent;
        self.samples -= unsent;
        self.remove_segment(first);
        true
    }

    fn remove_segment(&mut self, index: usize) {
        if let Some(s) = self.segments.remove(index) {
            self.bytes -= s.size;
            files::remove_segment(&self.dir, s.id);
        }
    }

    fn is_pinned_segment(&self, index: usize) -> bool {
        self.pinned.is_some_and(|p| index < p.segments)
    }

    /// Drops the oldest records stamped before `now_ms - max_age` (nothing while a batch is
    /// in flight), counted as `too_old`.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        let Some(max_age) = self.max_age_ms else {
            return;
        };
        if self.pinned.is_some() {
            return;
        }
        while let Some(meta) = self.record_at(0) {
            if meta.ts_ms >= now_ms.saturating_sub(max_age) {
                break;
            }
            let unsent = u64::from(meta.samples) - self.head_done_samples;
            self.losses.too_old += unsent;
            self.advance(1, 0, unsent);
        }
    }

    /// The `n`-th unsent record, counted from the oldest.
    fn record_at(&self, mut n: usize) -> Option<Meta> {
        for s in &self.segments {
            match s.records.get(n) {
                Some(m) => return Some(*m),
                None => n -= s.records.len(),
            }
        }
        None
    }

    /// Where the `n`-th record is: (segment index, segment id).
    fn segment_of(&self, mut n: usize) -> Option<(usize, u64)> {
        for (i, s) in self.segments.iter().enumerate() {
            if n < s.records.len() {
                return Some((i, s.id));
            }
            n -= s.records.len();
        }
        None
    }

    /// The series of the `n`-th record, read back (and cached) when not yet; a record that no
    /// longer checks out is dropped (counted as `corrupt`) and the next one tried.
    fn load(&mut self, n: usize) -> Option<&[Entry]> {
        while self.loaded.len() <= n {
            let meta = self.record_at(self.loaded.len())?;
            let (_, id) = self.segment_of(self.loaded.len())?;
            match files::read_record(&self.dir, id, &meta)
                .ok()
                .and_then(|payload| record::entries(&meta, &payload))
            {
                Some(entries) => self.loaded.push_back(entries),
                None => self.forget_record(self.loaded.len(), &meta),
            }
        }
        self.loaded.get(n).map(Vec::as_slice)
    }

    /// Removes the unreadable `n`-th record (never one in flight), counting it as corrupt.
    fn forget_record(&mut self, n: usize, meta: &Meta) {
        let done = if n == 0 {
            std::mem::take(&mut self.head_done_samples)
        } else {
            0
        };
        if n == 0 {
            self.head_done = 0;
        }
        let unsent = u64::from(meta.samples) - done;
        self.losses.corrupt += unsent;
        self.samples -= unsent;
        if let Some((i, _)) = self.segment_of(n) {
            let before: usize = self.segments.iter().take(i).map(|s| s.records.len()).sum();
            self.segments[i].records.remove(n - before);
        }
    }

    /// Pins the oldest series, at most `max_samples` samples (at least one series when not
    /// empty), and appends them to `body`, as [`super::queue::Queue::pin_batch`] does.
    pub(crate) fn pin_batch(&mut self, max_samples: usize, body: &mut Vec<u8>) -> Pinned {
        debug_assert!(self.pinned.is_none(), "a batch is already in flight");
        let mut pinned = Pinned {
            series: 0,
            samples: 0,
        };
        let (mut rec, mut next) = (0, self.head_done);
        'records: while let Some(entries) = self.load(rec) {
            for e in &entries[next..] {
                if pinned.series > 0 && pinned.samples + e.samples > max_samples {
                    break 'records;
                }
                pinned.series += 1;
                pinned.samples += e.samples;
                body.extend_from_slice(&e.bytes);
                next += 1;
            }
            rec += 1;
            next = 0;
        }
        if pinned.series > 0 {
            let last = if next == 0 { rec - 1 } else { rec };
            let segments = self.segment_of(last).map_or(1, |(i, _)| i + 1);
            self.pinned = Some(Pin {
                rec,
                next,
                segments,
                samples: pinned.samples as u64,
            });
        }
        pinned
    }

    /// The batch in flight has left the queue (accepted, or rejected for good).
    pub(crate) fn commit(&mut self) {
        if let Some(p) = self.pinned.take() {
            self.advance(p.rec, p.next, p.samples);
            files::write_cursor(&self.dir, self.cursor());
        }
    }

    /// The batch in flight is to be tried again.
    pub(crate) fn unpin(&mut self) {
        self.pinned = None;
    }

    /// Moves the read position to series `next` of record `rec`, `samples` further on.
    fn advance(&mut self, rec: usize, next: usize, samples: u64) {
        for _ in 0..rec {
            self.segments
                .iter_mut()
                .find(|s| !s.records.is_empty())
                .map(|s| s.records.pop_front());
            self.loaded.pop_front();
        }
        if rec > 0 {
            self.head_done = 0;
            self.head_done_samples = 0;
        }
        let head = self
            .loaded
            .front()
            .map(|e| &e[self.head_done..next.max(self.head_done)]);
        self.head_done_samples += head.map_or(0, |e| e.iter().map(|e| e.samples as u64).sum());
        self.head_done = next.max(self.head_done);
        self.samples -= samples;
        while self.segments.len() > 1 && self.segments[0].records.is_empty() {
            self.remove_segment(0);
        }
    }

    /// Where sending resumes after a restart: (segment id, record offset, series sent).
    fn cursor(&self) -> Option<(u64, u64, usize)> {
        let s = self.segments.iter().find(|s| !s.records.is_empty())?;
        Some((s.id, s.records[0].offset, self.head_done))
    }

    /// Samples not yet sent.
    pub(crate) fn samples(&self) -> usize {
        self.samples as usize
    }

    /// Bytes of the queue's segment files.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Samples dropped since the last call, by reason.
    pub(crate) fn take_losses(&mut self) -> Losses {
        std::mem::take(&mut self.losses)
    }

    /// The directory, for messages.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The size of one segment for a queue of at most `max_bytes`.
fn segment_bytes(max_bytes: u64) -> u64 {
    (max_bytes / 16).clamp(64 << 10, 64 << 20)
}

/// A `max_age` in milliseconds; `None` for no limit.
fn age_ms(max_age: Duration) -> Option<i64> {
    (!max_age.is_zero()).then(|| i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[path = "disk/tests.rs"]
mod tests;
