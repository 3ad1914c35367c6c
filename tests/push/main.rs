//! Prometheus remote-write: the writers, their queues (memory and disk), and a real Prometheus receiving them.
//! One test binary (tests/push/main.rs) with a module per concern; `cargo test --test push MODULE::`
//! runs one of them.

#[path = "../common/mod.rs"]
mod common;

mod disk_queue;
mod prometheus;
mod remote_write;
mod remote_write_pushback;
mod remote_write_queue;
mod writers;
