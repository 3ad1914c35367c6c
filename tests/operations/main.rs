//! The real binary as an operator runs it: flags, reloads, the systemd unit and the packages.
//! One test binary (tests/operations/main.rs) with a module per concern; `cargo test --test operations MODULE::`
//! runs one of them.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod packages;
mod packaging;
mod reload;
