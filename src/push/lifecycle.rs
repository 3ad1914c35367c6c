//! Writers coming and going: a writer started (its client built, its queue opened, its task
//! spawned), and a reload's new `[[writers]]` list turned into actions: a writer whose URL is
//! unchanged keeps its queue and its task (a changed header, auth or timeout swaps its client
//! for the next request), a new one starts, and a removed one is handed back to be flushed.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::backlog::Backlog;
use super::client::{redact, Client};
use super::disk::{self, DiskQueue};
use super::stats::Stats;
use super::{sender, PushError, WriterState, Writers};
use crate::config;

// === impl Writers ===

impl Writers {
    /// Makes the running writers those of `writers` (as [`Writers::start`] would, for new
    /// ones), in that order, and returns the writers that are no longer configured, still
    /// running, for the caller to [`Writers::flush`]. Everything that can fail (a URL, a
    /// header, a CA file, a queue directory) is tried first: on an error nothing changed.
    ///
    /// A kept writer keeps its queue (memory or disk). `[writer_opt]` stays as the writers
    /// started with it: its changes apply after a restart.
    pub fn reconfigure(&mut self, writers: &[config::Writer]) -> Result<Writers, PushError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PushError::NoRuntime)?;
        // What becomes of each configured writer: the running one of the same URL continues
        // (the first of them; a new client only where its settings changed), or a new one.
        let mut claimed = vec![false; self.configs.len()];
        let mut steps = Vec::with_capacity(writers.len());
        for (i, w) in writers.iter().enumerate() {
            let same =
                (0..self.configs.len()).find(|&j| !claimed[j] && self.configs[j].url == w.url);
            steps.push(match same {
                Some(j) => {
                    claimed[j] = true;
                    let changed = self.configs[j] != *w;
                    let client = changed
                        .then(|| Client::new(i, w).map(Arc::new))
                        .transpose()?;
                    Step::Keep(j, client)
                }
                None => Step::Start(open_queue(i, w, &self.opt)?, Arc::new(Client::new(i, w)?)),
            });
        }
        let mut old: Vec<_> = std::mem::take(&mut self.configs)
            .into_iter()
            .zip(std::mem::take(&mut self.states))
            .zip(std::mem::take(&mut self.tasks))
            .map(Some)
            .collect();
        for (w, step) in writers.iter().zip(steps) {
            let (state, task) = match step {
                Step::Keep(j, client) => {
                    let ((_, state), task) = old[j].take().expect("each kept writer once");
                    if let Some(client) = client {
                        *state.client.lock() = client;
                    }
                    (state, task)
                }
                Step::Start(opened, client) => {
                    let state = opened.into_state(w, client);
                    let send = sender::send_loop(state.clone(), self.retry, self.batch());
                    (state, runtime.spawn(send))
                }
            };
            self.configs.push(w.clone());
            self.states.push(state);
            self.tasks.push(task);
        }
        let mut removed = Writers {
            configs: Vec::new(),
            states: Vec::new(),
            tasks: Vec::new(),
            retry: self.retry,
            opt: self.opt.clone(),
        };
        for ((c, state), task) in old.into_iter().flatten() {
            removed.configs.push(c);
            removed.states.push(state);
            removed.tasks.push(task);
        }
        Ok(removed)
    }

    /// Samples per request: a batch never exceeds a memory queue, so that the batch in flight
    /// can always be held.
    fn batch(&self) -> usize {
        match self.opt.queue_dir {
            None => self.opt.batch.clamp(1, self.opt.chan_size.max(1)),
            Some(_) => self.opt.batch.max(1),
        }
    }
}

/// What a reload does with one configured writer.
enum Step {
    /// The running writer at this index continues, with a new client when one is given.
    Keep(usize, Option<Arc<Client>>),
    /// A new writer, its queue opened and its client built.
    Start(Opened, Arc<Client>),
}

/// A writer's queue, opened: a restart's leftovers are logged once it has started.
struct Opened {
    backlog: Backlog,
    stats: Arc<Stats>,
    recovery: Option<disk::Recovery>,
}

impl Opened {
    fn into_state(self, w: &config::Writer, client: Arc<Client>) -> Arc<WriterState> {
        let state = Arc::new(WriterState {
            url: redact(&w.url),
            client: Mutex::new(client),
            queue: Mutex::new(self.backlog),
            stats: self.stats,
            data: Notify::new(),
            drain: Notify::new(),
            draining: AtomicBool::new(false),
            dropping: AtomicBool::new(false),
        });
        if let Some(r) = self.recovery {
            log_recovery(&state.url, &r);
        }
        state
    }
}

/// One line for what a disk queue found at start: what it resumes, and what it lost.
fn log_recovery(url: &str, r: &disk::Recovery) {
    if r.lost_bytes > 0 || r.lost_samples > 0 {
        tracing::warn!(
            url = %url,
            lost_bytes = r.lost_bytes,
            lost_samples = r.lost_samples,
            resumed_samples = r.samples,
            "remote write queue: unreadable records skipped (a crash tore them or the disk \
             damaged them; counted as reason=\"corrupt\"), sending the rest"
        );
    } else if r.samples > 0 {
        tracing::info!(
            url = %url,
            samples = r.samples,
            "remote write queue: resuming the samples queued before the restart"
        );
    }
}

/// Opens writer `index`'s queue: on disk under `queue_dir` when set, else in memory.
fn open_queue(
    index: usize,
    w: &config::Writer,
    opt: &config::WriterOpt,
) -> Result<Opened, PushError> {
    let url = redact(&w.url);
    // `${NAME}` and `$NAME` are the environment's (the shipped unit's `$STATE_DIRECTORY`);
    // a value that expands to nothing keeps the queue in memory.
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let base = opt
        .queue_dir
        .as_ref()
        .map(|d| crate::labels::os_expand(&d.to_string_lossy(), env))
        .filter(|d| !d.trim().is_empty())
        .map(std::path::PathBuf::from);
    let Some(base) = &base else {
        let stats = Arc::new(Stats::new());
        let backlog = Backlog::memory(opt.chan_size, stats.clone(), url);
        return Ok(Opened {
            backlog,
            stats,
            recovery: None,
        });
    };
    let dir = disk::dir_for(base, &url);
    let (queue, recovery) =
        DiskQueue::open(&dir, opt.queue_max_bytes, opt.queue_max_age).map_err(|e| {
            PushError::QueueDir {
                index,
                url: url.clone(),
                path: dir.display().to_string(),
                reason: crate::config::io_reason(&e),
            }
        })?;
    let stats = Arc::new(Stats::on_disk());
    let backlog = Backlog::disk(queue, stats.clone(), url);
    Ok(Opened {
        backlog,
        stats,
        recovery: Some(recovery),
    })
}
