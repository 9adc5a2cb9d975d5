//! The one integration test binary: a module per area, sharing the harness in `util`.

mod util;

mod api_limits;
mod cli;
mod compose;
mod compose_run;
mod daemon;
mod daemon_fakes;
mod deploy;
mod discovery;
mod doctor;
mod engine;
mod engine_fakes;
mod faults;
mod fuzz_regressions;
mod harness;
mod hostile_registry;
mod invariants;
mod notify;
mod notify_servers;
mod registry;
mod resilience;
mod runtime;
mod secrets;
mod standalone;
mod swarm;
mod systemd;
mod telemetry;
mod web;
