//! The test peers themselves: the fake Ollama's own checks, and the real Python clients through the agent.
//! One test binary (tests/fake_and_clients/main.rs) with a module per concern; `cargo test --test fake_and_clients MODULE::`
//! runs one of them.

#[path = "../common/mod.rs"]
mod common;

mod fake_ollama_selftest;
mod python_clients;
