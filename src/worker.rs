//! Leaf: the proxy's worker threads, one per CPU, each with its own current-thread runtime.
//!
//! A request lives on one worker from accept to its last byte, and so does the backend
//! connection it drives: each worker keeps its own backend pool (see `proxy/upstream.rs`), so
//! no readiness event crosses threads. Every other thread (the control runtime: checks, push,
//! the own `/metrics` listener) is worker 0.

use std::cell::Cell;
use std::sync::OnceLock;

/// Proxy workers at most, whatever the machine says.
const MAX_WORKERS: usize = 64;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// How many proxy worker threads serve the proxy ports: one per CPU the process may use.
pub(crate) fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS)
    })
}

/// This thread's worker number: `1..=count()` on a proxy worker, 0 anywhere else.
pub(crate) fn index() -> usize {
    INDEX.get()
}

/// Marks the current thread as proxy worker `index` (`1..=count()`).
pub(crate) fn enter(index: usize) {
    INDEX.set(index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_worker_zero_until_it_enters_and_workers_do_not_share_their_number() {
        assert!(count() >= 1);
        assert_eq!(index(), 0);
        let other = std::thread::spawn(|| {
            enter(2);
            index()
        });
        assert_eq!(other.join().unwrap(), 2);
        assert_eq!(index(), 0, "the number is per thread");
    }
}
