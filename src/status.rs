//! The live status page of one instance (`GET /status`, `GET /status.json`).

pub mod ring;

pub use ring::Ring;
