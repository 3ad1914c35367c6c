//! A reload (SIGHUP), applied without a gap: the one place that turns a new configuration into
//! actions. Everything that can fail is tried first (binding added instances and moved
//! `metrics_listen_addr`s, starting new writers); on an error nothing changed and the
//! listeners it bound are closed again. Then:
//! - an instance that continues (`plan.rs`) gets its new state in its [`Live`] slot: new
//!   requests see the new labels, timeouts, client options and limits, requests in flight
//!   finish as they began; its loops restart with the new interval;
//! - an added instance is served; a removed one stops accepting, its in-flight requests
//!   finish (up to [`GRACE`]), then its last samples are queued;
//! - a writer whose URL is unchanged keeps its queue; a removed writer gets up to [`FLUSH`]
//!   to deliver its queue, then stops (a disk queue stays in its folder, and is sent when
//!   that URL is configured again).
//!
//! [`Live`]: crate::app::Live

use std::sync::Arc;

use parking_lot::RwLock;

use super::plan::plan;
use super::running::{Bound, Running};
use super::{agent_metrics, labelers, main_file, push, Agent, FLUSH, GRACE};
use crate::app::InstanceState;
use crate::config::Config;
use crate::push::Writers;
use crate::server::Workers;

impl Agent {
    /// Applies `config` (already loaded and checked); on an error the configuration before
    /// it stays in force, and the error is one line naming the file and field.
    pub(super) async fn reload(&mut self, config: Config, workers: &Workers) -> Result<(), String> {
        let plan = plan(&self.config.instances, &config.instances);
        let mut added = Vec::new();
        for &j in &plan.added {
            added.push((
                j,
                Bound::bind(&config.instances[j])
                    .await
                    .map_err(|e| format!("{e:#}"))?,
            ));
        }
        let mut moved = Vec::new();
        for &(i, j) in &plan.kept {
            let (old, new) = (&self.config.instances[i], &config.instances[j]);
            if old.metrics_listen_addr != new.metrics_listen_addr {
                let listener = Bound::bind_metrics(new)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                moved.push((j, listener));
            }
        }
        let removed_writers = self.reload_writers(&config)?;
        if self.config.writer_opt != config.writer_opt {
            tracing::warn!(
                "[writer_opt] changed: it applies after a restart (the writers keep their queues)"
            );
        }
        let (global, labelers) = labelers(&config);
        self.agent_metrics = agent_metrics(&self.writers, global, &self.reloads);
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        let mut next: Vec<Option<Running>> = config.instances.iter().map(|_| None).collect();
        let mut labelers: Vec<_> = labelers.into_iter().map(Some).collect();
        for &(i, j) in &plan.kept {
            let mut running = old[i].take().expect("each kept instance once");
            let labeler = labelers[j].take().expect("one labeler each");
            let inst = config.instances[j].clone();
            let state = Arc::new(
                running
                    .state()
                    .next(inst, labeler, self.agent_metrics.clone()),
            );
            running.update(state.clone(), &self.writers);
            if let Some(at) = moved.iter().position(|(m, _)| *m == j) {
                running.serve_metrics(moved.swap_remove(at).1, &state);
            }
            next[j] = Some(running);
        }
        for (j, bound) in added {
            let labeler = labelers[j].take().expect("one labeler each");
            let inst = config.instances[j].clone();
            let state = Arc::new(InstanceState::new(
                inst,
                labeler,
                self.agent_metrics.clone(),
            ));
            if let Some(listen) = bound.proxy_addr() {
                let metrics = bound.metrics_addr().unwrap_or(listen);
                let backend = &state.upstream().url;
                tracing::info!(listen = %listen, backend = %backend, metrics = %metrics, "proxying");
            }
            next[j] = Some(Running::start(state, bound, workers, &self.writers));
        }
        self.running = next.into_iter().flatten().collect();
        for running in old.into_iter().flatten() {
            tokio::spawn(retire(running, self.writers.clone()));
        }
        if let Some(removed) = removed_writers.filter(|w| !w.is_empty()) {
            tokio::spawn(removed.flush(FLUSH));
        }
        let (kept, added, removed) = (plan.kept.len(), plan.added.len(), plan.removed.len());
        self.config = config;
        self.start_self_loop();
        tracing::info!(kept, added, removed, "configuration reloaded");
        Ok(())
    }

    /// The writers of `config`: kept, started or stopped (those returned, to be flushed).
    fn reload_writers(&mut self, config: &Config) -> Result<Option<Writers>, String> {
        let error = |e| format!("{}: {e}", main_file(config));
        if !self.push {
            return Ok(None);
        }
        match &self.writers {
            Some(w) => w
                .write()
                .reconfigure(&config.writers)
                .map(Some)
                .map_err(error),
            None if config.writers.is_empty() => Ok(None),
            None => {
                let started =
                    Writers::start(&config.writers, &self.config.writer_opt).map_err(error)?;
                self.writers = Some(Arc::new(RwLock::new(started)));
                Ok(None)
            }
        }
    }
}

/// A removed instance: stops accepting, lets its requests finish, queues its last samples.
async fn retire(running: Running, writers: Option<Arc<RwLock<Writers>>>) {
    let state = running.state();
    running.signal_stop();
    let late = running.drained(tokio::time::Instant::now() + GRACE).await;
    if late > 0 {
        tracing::warn!(listen = %state.config.proxy_listen_addr, "a removed instance still had requests in flight after {GRACE:?}");
    }
    if let Some(w) = writers {
        push(&w.read(), &state.snapshot());
    }
}
