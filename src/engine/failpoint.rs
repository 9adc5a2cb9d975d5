//! Crash points for the fault tests, compiled only with the `failpoints` feature.
//!
//! With `LOOKOUT_FAILPOINT=<name>` set, the process stops at that point of an update: it says so on
//! stderr and waits, and the test kills it with `kill -9`. The names are the points of
//! [`super::update`]: `after_pull`, `after_journal`, `after_file_write`, `after_up`,
//! `during_health_gate`, `during_rollback`, and `during_check` at the start of each service's
//! check ([`super::pass`]). A standalone container's update ([`super::standalone`]) has its own:
//! `standalone_after_pull`, `standalone_after_journal`, `standalone_after_rename`,
//! `standalone_after_stop`, `standalone_after_create`, `standalone_during_health_gate`,
//! `standalone_after_gate`, `standalone_during_dependents` (a dependent renamed aside),
//! `standalone_during_rollback`. A Swarm service's ([`super::swarm`]): `swarm_after_journal`,
//! `swarm_after_stack_edit` (the stack file written, Swarm not asked), `swarm_during_update`
//! (Swarm asked), `swarm_during_rollback` (Swarm asked to roll back). With
//! `LOOKOUT_FAILPOINT=panic:<name>`, lookout panics there instead, for the tests that prove a
//! panic fails one service and nothing else. Without the feature, [`hit`] is empty.

/// The line a test waits for before it kills the process.
pub const REACHED: &str = "lookout failpoint reached:";

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let Ok(asked) = std::env::var("LOOKOUT_FAILPOINT") else {
        return;
    };
    if asked == name {
        #[allow(clippy::print_stderr)] // The fault test reads this line from stderr.
        {
            eprintln!("{REACHED} {name}");
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    if asked.strip_prefix("panic:") == Some(name) {
        #[allow(clippy::panic)] // Panicking here is what the test asked for.
        {
            panic!("failpoint {name}");
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
