//! The documents and integrations held to the code: README's tables, boards, alerts, the status page, Nightingale's metric descriptions.
//! One test binary (tests/docs_and_boards/main.rs) with a module per concern; `cargo test --test docs_and_boards MODULE::`
//! runs one of them.

#[path = "../common/mod.rs"]
mod common;

mod alerts;
mod boards;
mod nightingale;
mod readme;
mod status;
