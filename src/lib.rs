//! lookout keeps compose services on the newest image their owners allow.
//!
//! The library holds everything; `src/main.rs` only parses the command line and calls in here.
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.

pub mod api;
pub mod cli;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod durable;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod notify;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod schedule;
pub mod state;
pub mod telemetry;
