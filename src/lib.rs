//! ollama-tap: a transparent proxy in front of Ollama that meters every real request.
//!
//! The data path, one module per stage:
//!
//! ```text
//! run ──► agent ──► server (proxy port, hyper) ──► app::port_service ──► proxy ──► Ollama
//!            │                                        (/metrics, /health: axum)  │  upstream pool
//!            └─► probe (GET /api/version, /api/ps) ──► proxy::Upstream          tap
//!                                                                                │
//!                                store ──► snapshot ──► exposition (/metrics) ◄──┘
//!                                                   ├─► categraf_lines (--test)
//!                                                   └─► push (remote write)
//!
//! leaves, importable by every stage (they import nothing from the crate):
//!   vocab  Endpoint, Outcome, Usage, FinishReason, Record, the model label constants
//!   error  BoxError, IdleTimeout
//!   worker which proxy worker thread this is (one per CPU)
//! ```
//!
//! On the metering path (proxy → tap → store → snapshot → exposition, push) imports follow
//! the arrows: a stage names the stages after it, the leaves, and `config` (whose settings
//! every stage may read), never one before it. The store knows nothing of the tap, the tap
//! nothing of the proxy; what two stages both name lives in a leaf.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(clippy::too_many_lines)]

// The crate's outside: what the binary, the tests, the benchmark and the fuzz targets name.
// Three modules whose parts are tested and fuzzed one by one (the configuration, the stream
// readers, the remote-write formats), and a few items re-exported here. Every other item is
// `pub(crate)` (so rustc reports what nothing uses). The modules by role, as in the picture.
//
// The runtime: flags, the agent and its instances, the listeners, the backend check.
mod agent;
mod app;
mod cli;
mod probe;
mod run;
mod server;
mod shutdown;

// The metering path, from the config to the exposition, the push and the status page.
mod categraf_lines;
pub mod config;
mod exposition;
mod labels;
mod proxy;
pub mod push;
mod snapshot;
mod status;
mod store;
pub mod tap;

// The leaves.
mod error;
mod vocab;
mod worker;

pub use agent::{Agent, FLUSH, GRACE};
pub use app::InstanceState;
pub use cli::Cli;
pub use error::BoxError;
pub use run::{exit_code, run};
pub use snapshot::{Family, Kind};
pub use store::histogram::{le_label, QUEUE_WAIT_BUCKETS};
pub use store::Store;
pub use vocab::Endpoint;

/// The agent's version, as `--version`, `/health` and the User-Agent say it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// User-Agent of the agent's own requests.
pub const USER_AGENT: &str = concat!("ollama-tap/", env!("CARGO_PKG_VERSION"));
