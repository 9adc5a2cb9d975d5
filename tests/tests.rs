//! The one integration test binary: a module per area, sharing the harness in `util`.

mod util;

mod cli;
mod compose;
mod daemon;
mod deploy;
mod doctor;
mod engine;
mod faults;
mod fuzz_regressions;
mod harness;
mod registry;
mod runtime;
mod telemetry;
