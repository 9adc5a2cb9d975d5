//! The update engine: decide what to do about each service, and carry an update through step by
//! step — or put everything back.
//!
//! [`decide`] is pure. The steps of an update go through the seams: the registry for digests,
//! the Docker runtime for pulls, tags and health, the compose editor for the file, and the state
//! store for the journal.

pub mod decide;

pub use decide::{Candidate, Decision, Facts, Hold, Running, decide};
