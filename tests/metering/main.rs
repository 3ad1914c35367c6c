//! What the agent counts and how it exposes it on /metrics.
//! One test binary (tests/metering/main.rs) with a module per concern; `cargo test --test metering MODULE::`
//! runs one of them.

#[path = "../common/mod.rs"]
mod common;

mod cardinality;
mod clients;
mod exposition;
mod exposure;
mod metering;
mod otel;
mod queue_wait;
