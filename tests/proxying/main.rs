//! What the proxy passes through, byte for byte, and how it behaves when peers misbehave.
//! One test binary (tests/proxying/main.rs) with a module per concern; `cargo test --test proxying MODULE::`
//! runs one of them.

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod dialects;
mod faults;
mod hangups;
mod pool;
mod slow_clients;
mod smuggling;
mod transparency;
