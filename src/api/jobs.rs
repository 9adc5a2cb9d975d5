//! Long actions that answer at once: a check, an update or a rollback started as a job runs in
//! the background, and `GET /api/v1/jobs/{id}` says where it is. The page starts every action
//! this way and follows it; API clients ask for it with `Prefer: respond-async` (RFC 7240).
//!
//! Jobs are kept in memory, the newest [`KEEP`] of them: a job id outlives neither a restart nor
//! a thousand newer jobs, and then answers 404.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::ApiError;
use super::model::{ErrorBody, JobKind, JobState, JobView};

/// Jobs remembered, finished or not.
pub(crate) const KEEP: usize = 1000;

/// The jobs of one API.
#[derive(Default)]
pub(crate) struct Jobs {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first.
    jobs: VecDeque<JobView>,
    /// Ids are a counter plus a random part, so an id from before a restart is not mistaken
    /// for a new job.
    next: u64,
    epoch: Option<u32>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Jobs {
    /// Records a job and runs `work` in the background; returns the job as it is now
    /// (`running`).
    pub(crate) fn start<F>(
        self: &Arc<Self>,
        kind: JobKind,
        service: Option<String>,
        actor: &str,
        work: F,
    ) -> JobView
    where
        F: Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
    {
        let view = {
            let mut inner = lock(&self.inner);
            let epoch = *inner.epoch.get_or_insert_with(|| fastrand::u32(..));
            inner.next = inner.next.wrapping_add(1);
            let view = JobView {
                id: format!("{epoch:08x}-{:06}", inner.next),
                kind,
                service,
                actor: actor.to_owned(),
                state: JobState::Running,
                created_at: now(),
                finished_at: None,
                result: None,
                error: None,
            };
            inner.jobs.push_back(view.clone());
            while inner.jobs.len() > KEEP {
                inner.jobs.pop_front();
            }
            view
        };
        let jobs = Arc::clone(self);
        let id = view.id.clone();
        tokio::spawn(async move {
            // A panic in the work is a failed job, not a job that runs for ever.
            let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work))
                .await
                .unwrap_or_else(|_| Err(ApiError::Internal("the job hit a bug".into())));
            jobs.finish(&id, outcome);
        });
        view
    }

    fn finish(&self, id: &str, outcome: Result<serde_json::Value, ApiError>) {
        let mut inner = lock(&self.inner);
        if let Some(job) = inner.jobs.iter_mut().find(|j| j.id == id) {
            job.finished_at = Some(now());
            match outcome {
                Ok(v) => {
                    job.state = JobState::Succeeded;
                    job.result = Some(v);
                }
                Err(e) => {
                    job.state = JobState::Failed;
                    job.error = Some(ErrorBody {
                        error: e.to_string(),
                        kind: e.kind().to_owned(),
                    });
                }
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<JobView> {
        lock(&self.inner).jobs.iter().find(|j| j.id == id).cloned()
    }

    /// Services with an update or rollback job running.
    pub(crate) fn busy(&self, service: &str) -> bool {
        lock(&self.inner).jobs.iter().any(|j| {
            j.state == JobState::Running
                && j.kind != JobKind::Check
                && j.service.as_deref() == Some(service)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_in_the_background_and_keeps_its_answer() {
        let jobs = Arc::new(Jobs::default());
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let job = jobs.start(JobKind::Update, Some("web".into()), "api", async move {
            let _ = wait.await;
            Ok(serde_json::json!({"result": "updated"}))
        });
        assert_eq!(job.state, JobState::Running);
        assert!(jobs.busy("web"));
        assert!(!jobs.busy("db"));
        go.send(()).unwrap();
        for _ in 0..100 {
            if jobs.get(&job.id).unwrap().state != JobState::Running {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let done = jobs.get(&job.id).unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.result.unwrap()["result"], "updated");
        assert!(done.finished_at.is_some());
        assert!(!jobs.busy("web"));
    }

    #[tokio::test]
    async fn a_refusal_or_a_panic_fails_the_job() {
        let jobs = Arc::new(Jobs::default());
        let refused = jobs.start(JobKind::Rollback, Some("web".into()), "api", async {
            Err(ApiError::Conflict("nothing to roll back".into()))
        });
        let panics = jobs.start(JobKind::Check, None, "api", async {
            if jobs_panic() {
                panic!("a bug");
            }
            Ok(serde_json::Value::Null)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = jobs.get(&refused.id).unwrap();
        assert_eq!(refused.state, JobState::Failed);
        assert_eq!(refused.error.unwrap().kind, "conflict");
        let panics = jobs.get(&panics.id).unwrap();
        assert_eq!(panics.state, JobState::Failed);
        assert_eq!(panics.error.unwrap().kind, "internal");
    }

    fn jobs_panic() -> bool {
        true
    }

    #[tokio::test]
    async fn only_the_newest_jobs_are_kept() {
        let jobs = Arc::new(Jobs::default());
        let first = jobs.start(JobKind::Check, None, "api", async {
            Ok(serde_json::Value::Null)
        });
        for _ in 0..KEEP {
            jobs.start(JobKind::Check, None, "api", async {
                Ok(serde_json::Value::Null)
            });
        }
        assert!(jobs.get(&first.id).is_none());
        assert_eq!(lock(&jobs.inner).jobs.len(), KEEP);
    }
}
