//! Re-listing on the engine's container events: `start`, `destroy` and `rename` (a new
//! `docker compose up`, a container removed or renamed) make the daemon look again within
//! seconds, without waiting for the next scheduled check.
//!
//! [`follow`] keeps one event stream open through the runtime seam, reconnecting with
//! exponential backoff (and looking again after each reconnect, since events may have been
//! missed meanwhile). A burst of events (compose starting ten containers) becomes one call of
//! `relist` once the engine has been quiet for [`QUIET`], or [`MAX_WAIT`] after the burst's
//! first event at the latest.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing
    )
)]

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::runtime::{ContainerEvent, ContainerRuntime};

/// How long the engine must be quiet after an event before lookout looks.
pub const QUIET: Duration = Duration::from_millis(750);
/// The longest a burst of events delays the look.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// The first wait before reconnecting to the event stream; doubled after each failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between reconnections.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A stream that stayed up this long resets the backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(60);

/// The wait before the next reconnection, after `current`.
pub fn next_backoff(current: Duration) -> Duration {
    current.saturating_mul(2).clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// Follows `runtime`'s container events until the future is dropped, calling `relist` once
/// per burst (and after each reconnection).
pub async fn follow<R, F, Fut>(runtime: &R, relist: F)
where
    R: ContainerRuntime,
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let (tx, mut rx) = mpsc::channel::<ContainerEvent>(256);
    let stream = async {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            if !first {
                // Events may have been missed while the stream was down.
                let _ = tx.try_send(ContainerEvent {
                    action: "reconnect".into(),
                    id: String::new(),
                    name: String::new(),
                });
            }
            first = false;
            let started = Instant::now();
            match runtime.container_events(tx.clone()).await {
                Ok(()) => tracing::warn!(
                    retry_in_s = backoff.as_secs_f64(),
                    "the Docker engine ended its event stream; reconnecting"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    retry_in_s = backoff.as_secs_f64(),
                    "cannot follow the Docker engine's container events; reconnecting"
                ),
            }
            if started.elapsed() >= HEALTHY_STREAM {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
        }
    };
    let bursts = async {
        while let Some(event) = rx.recv().await {
            tracing::debug!(action = %event.action, container = %event.name, "container event");
            let latest = Instant::now().checked_add(MAX_WAIT);
            loop {
                let quiet = Instant::now().checked_add(QUIET);
                let until = match (quiet, latest) {
                    (Some(q), Some(l)) => q.min(l),
                    (q, l) => q.or(l).unwrap_or_else(Instant::now),
                };
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            relist().await;
        }
    };
    tokio::select! {
        () = stream => {}
        () = bursts => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let mut b = BACKOFF_MIN;
        let mut seen = vec![b.as_secs()];
        for _ in 0..8 {
            b = next_backoff(b);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(next_backoff(Duration::MAX), BACKOFF_MAX);
    }
}
