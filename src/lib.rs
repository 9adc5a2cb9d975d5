//! lookout keeps compose services on the newest image their owners allow.
//!
//! The library holds everything; `src/main.rs` only parses the command line and calls in here.
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.

#![forbid(unsafe_code)]
// Output is the CLI's job; everything else logs through `tracing` (tests/invariants.rs checks
// what these lints cannot see, such as a raw `std::io::stdout()`).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
#[allow(clippy::print_stdout, clippy::print_stderr)] // The CLI prints its answers.
pub mod cli;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod discovery;
pub(crate) mod doctor;
pub(crate) mod durable;
pub mod engine;
mod error_chain;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod notify;
pub mod policy;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod telemetry;
pub mod tls;
pub(crate) mod web;
