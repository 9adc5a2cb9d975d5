//! Push hooks, coalesced: however many hooks name a service, it gets one check per burst.
//!
//! A hook for a service that is idle queues a check, which starts after a short debounce (hooks
//! of one push arrive together: layers, manifests, tags). More hooks while it waits join it. A
//! hook while the check runs queues exactly one follow-up, which runs after it (the push may
//! have landed after the check read the registry). Each service has its own queue: a service
//! whose registry hangs holds up nobody else's check.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

/// Runs the check of one service (by name).
pub type CheckFn = Box<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

/// What a hook did to its service's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The service was idle: a check starts after the debounce.
    Started,
    /// A check was already waiting to start; the hook joined it.
    Joined,
    /// A check is running: one follow-up check is queued after it (or already was).
    FollowUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A check waits to start.
    Queued,
    /// A check runs and nothing is queued after it.
    Checking,
}

/// The per-service check queues of push hooks.
pub struct Coalescer {
    debounce: Duration,
    check: CheckFn,
    /// Services with a check queued or running; absent means idle.
    state: Mutex<HashMap<String, State>>,
    stop: watch::Sender<bool>,
}

impl Coalescer {
    /// `check(service)` runs one check of that service; `debounce` is how long a queued check
    /// waits for more hooks before it starts.
    pub fn new(debounce: Duration, check: CheckFn) -> Arc<Self> {
        Arc::new(Self {
            debounce,
            check,
            state: Mutex::new(HashMap::new()),
            stop: watch::Sender::new(false),
        })
    }

    /// A hook names `service`. Never waits; call it inside a tokio runtime.
    pub fn push(self: &Arc<Self>, service: &str) -> Pushed {
        if *self.stop.borrow() {
            return Pushed::Joined;
        }
        let mut state = self.lock();
        match state.get_mut(service) {
            Some(State::Queued) => Pushed::Joined,
            Some(s @ State::Checking) => {
                *s = State::Queued;
                Pushed::FollowUp
            }
            None => {
                state.insert(service.to_owned(), State::Queued);
                drop(state);
                tokio::spawn(self.clone().worker(service.to_owned()));
                Pushed::Started
            }
        }
    }

    /// No queued check starts any more (one running is left to the engine's own stop).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Services with a check queued or running.
    pub fn busy(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn worker(self: Arc<Self>, service: String) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(self.debounce) => {}
            }
            self.lock().insert(service.clone(), State::Checking);
            if let Err(panic) = AssertUnwindSafe((self.check)(service.clone()))
                .catch_unwind()
                .await
            {
                tracing::error!(%service, panic = %crate::engine::pipeline::panic_message(&*panic), "the check a push hook asked for failed");
            }
            // One lock for the decision and the removal, so a hook arriving now is not lost.
            let mut state = self.lock();
            if state.get(&service) != Some(&State::Queued) || *self.stop.borrow() {
                state.remove(&service);
                return;
            }
        }
        self.lock().remove(&service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coalescer whose check of `service` takes `takes` (forever for `hang`), counting runs
    /// per service.
    fn counting(takes: Duration) -> (Arc<Coalescer>, Arc<Mutex<HashMap<String, usize>>>) {
        let runs = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let seen = runs.clone();
        let check: CheckFn = Box::new(move |service| {
            let seen = seen.clone();
            Box::pin(async move {
                *seen.lock().unwrap().entry(service.clone()).or_default() += 1;
                if service == "hang" {
                    std::future::pending::<()>().await;
                }
                assert!(service != "panics", "boom");
                tokio::time::sleep(takes).await;
            })
        });
        (Coalescer::new(Duration::from_secs(1), check), runs)
    }

    fn runs(r: &Mutex<HashMap<String, usize>>, service: &str) -> usize {
        r.lock().unwrap().get(service).copied().unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_500_hooks_runs_one_check() {
        let (c, r) = counting(Duration::from_secs(3));
        let mut pushed = Vec::new();
        for _ in 0..500 {
            pushed.push(c.push("web"));
            tokio::time::sleep(Duration::from_micros(400)).await; // 500 in 0.2 s
        }
        assert_eq!(pushed[0], Pushed::Started);
        assert!(pushed[1..].iter().all(|p| *p == Pushed::Joined));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs(&r, "web"), 1);
        assert_eq!(c.busy(), 0, "the queue is empty again");
    }

    #[tokio::test(start_paused = true)]
    async fn hooks_during_a_check_queue_exactly_one_follow_up() {
        let (c, r) = counting(Duration::from_secs(5));
        c.push("web");
        tokio::time::sleep(Duration::from_secs(2)).await; // the check runs (1 s to 6 s)
        assert_eq!(runs(&r, "web"), 1);
        assert_eq!(c.push("web"), Pushed::FollowUp);
        for _ in 0..100 {
            assert_eq!(c.push("web"), Pushed::Joined);
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs(&r, "web"), 2);
        // Idle again: the next hook starts a new check.
        assert_eq!(c.push("web"), Pushed::Started);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs(&r, "web"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_of_one_service_holds_up_no_other() {
        let (c, r) = counting(Duration::from_secs(1));
        c.push("hang");
        c.push("web");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs(&r, "web"), 1);
        c.push("web");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs(&r, "web"), 2);
        assert_eq!(runs(&r, "hang"), 1);
        assert_eq!(c.push("hang"), Pushed::FollowUp);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_check_leaves_the_queue_usable() {
        let (c, r) = counting(Duration::from_secs(1));
        c.push("panics");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(c.busy(), 0);
        assert_eq!(c.push("panics"), Pushed::Started);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs(&r, "panics"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_stop_no_queued_check_starts() {
        let (c, r) = counting(Duration::from_secs(1));
        c.push("web");
        c.stop();
        c.push("other");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs(&r, "web") + runs(&r, "other"), 0);
        assert_eq!(c.busy(), 0);
    }
}
