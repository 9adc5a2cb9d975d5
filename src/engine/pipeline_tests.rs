use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant as TokioInstant;

use std::path::{Path, PathBuf};

use super::*;
use crate::engine::pass::ServiceResult;

/// How a fake service behaves.
#[derive(Clone, Copy)]
enum Fake {
    /// The check finds nothing to do after this many seconds.
    UpToDate(u64),
    /// The check finds an update after `check` seconds; applying it takes `apply` seconds.
    Update { check: u64, apply: u64 },
    /// The check never answers (a registry that hangs).
    Hangs,
    /// The check panics.
    PanicsInCheck,
    /// The check finds an update whose application panics.
    PanicsInApply,
}

/// What the fakes saw: (service, seconds since start) of each applied change, and the most
/// changes in flight at once.
#[derive(Default)]
struct Seen {
    applied: StdMutex<Vec<(usize, u64)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    finished: StdMutex<Vec<usize>>,
}

struct Run {
    outcomes: Vec<ServiceOutcome>,
    seen: Seen,
}

impl Run {
    fn result(&self, i: usize) -> (ServiceResult, &str) {
        let o = &self.outcomes[i];
        (o.result, o.reason.as_deref().unwrap_or(""))
    }

    fn applied(&self) -> Vec<(usize, u64)> {
        self.seen.applied.lock().unwrap().clone()
    }
}

/// A fake service: its index and behaviour.
struct FakeService {
    i: usize,
    name: String,
    fake: Fake,
}

impl Service for FakeService {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Runs `fakes` through a pipeline, each service in a compose file of its own, one change at a
/// time; `stop_after` seconds, lookout is asked to stop.
async fn run(fakes: &[Fake], after: &[Vec<usize>], stop_after: Option<u64>) -> Run {
    let files: Vec<String> = (0..fakes.len()).map(|i| format!("f{i}")).collect();
    run_with(fakes, after, &files, 1, stop_after).await
}

/// [`run`] with the compose file of each service and `concurrency` changes at once.
async fn run_with(
    fakes: &[Fake],
    after: &[Vec<usize>],
    files: &[String],
    concurrency: usize,
    stop_after: Option<u64>,
) -> Run {
    let services: Vec<FakeService> = fakes
        .iter()
        .enumerate()
        .map(|(i, &fake)| FakeService {
            i,
            name: format!("s{i}"),
            fake,
        })
        .collect();
    let gate = UpdateGate::new(concurrency);
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let stop = Stop::default();
    let seen = Seen::default();
    let start = TokioInstant::now();
    let secs = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    let pipeline = Pipeline {
        after,
        files: &files,
        parallel: 8,
        check_timeout: Duration::from_secs(120),
        gate: &gate,
        stop: &stop,
    };
    let check = |service: &FakeService| {
        let (name, fake) = (service.name.clone(), service.fake);
        async move {
            let report = ServiceOutcome::new(&name, ServiceResult::UpdateAvailable);
            match fake {
                Fake::UpToDate(s) => {
                    secs(s).await;
                    Checked::Done(ServiceOutcome::new(&name, ServiceResult::UpToDate))
                }
                Fake::Update { check, apply } => {
                    secs(check).await;
                    Checked::Apply {
                        report,
                        work: apply,
                    }
                }
                Fake::Hangs => std::future::pending().await,
                Fake::PanicsInCheck => panic!("boom in check {name}"),
                Fake::PanicsInApply => Checked::Apply {
                    report,
                    work: u64::MAX,
                },
            }
        }
    };
    let apply = |service: &FakeService, mut report: ServiceOutcome, apply_secs: u64| {
        let (seen, i) = (&seen, service.i);
        async move {
            let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
            seen.applied
                .lock()
                .unwrap()
                .push((i, start.elapsed().as_secs()));
            assert!(apply_secs != u64::MAX, "boom in apply s{i}");
            secs(apply_secs).await;
            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
            report.result = ServiceResult::Updated;
            report
        }
    };
    let finished =
        |service: &FakeService, _: &ServiceOutcome| seen.finished.lock().unwrap().push(service.i);
    let stopper = async {
        match stop_after {
            Some(s) => {
                secs(s).await;
                stop.stop();
            }
            None => std::future::pending().await,
        }
    };
    let outcomes = tokio::select! {
        outcomes = pipeline.run(&services, check, apply, finished) => outcomes,
        () = async { stopper.await; std::future::pending().await } => unreachable!(),
    };
    Run { outcomes, seen }
}

fn none(n: usize) -> Vec<Vec<usize>> {
    vec![Vec::new(); n]
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_one_check_fails_that_service_only() {
    let r = run(
        &[Fake::PanicsInCheck, Fake::Update { check: 1, apply: 1 }],
        &none(2),
        None,
    )
    .await;
    let (result, reason) = r.result(0);
    assert_eq!(result, ServiceResult::CheckFailed);
    assert!(
        reason.contains("bug") && reason.contains("boom in check s0"),
        "{reason}"
    );
    assert_eq!(r.result(1).0, ServiceResult::Updated);
    assert_eq!(
        r.seen.finished.lock().unwrap().len(),
        2,
        "both outcomes reported"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_applying_fails_that_service_and_releases_the_update_lock() {
    let r = run(
        &[Fake::PanicsInApply, Fake::Update { check: 1, apply: 1 }],
        &none(2),
        None,
    )
    .await;
    let (result, reason) = r.result(0);
    assert_eq!(result, ServiceResult::Failed);
    assert!(reason.contains("boom in apply s0"), "{reason}");
    assert_eq!(
        r.result(1).0,
        ServiceResult::Updated,
        "the next change got the lock"
    );
}

#[tokio::test(start_paused = true)]
async fn an_update_never_waits_for_the_check_of_another_service() {
    let r = run(
        &[
            Fake::Hangs,
            Fake::Update { check: 2, apply: 3 },
            Fake::UpToDate(1),
        ],
        &none(3),
        None,
    )
    .await;
    assert_eq!(
        r.applied(),
        vec![(1, 2)],
        "s1 was applied right after its own check, while s0's check hung"
    );
    assert_eq!(r.result(1).0, ServiceResult::Updated);
    let (result, reason) = r.result(0);
    assert_eq!(result, ServiceResult::CheckFailed);
    assert!(reason.contains("check_timeout (120s)"), "{reason}");
    assert_eq!(r.outcomes[0].duration, Duration::from_secs(120));
    assert_eq!(r.outcomes[1].duration, Duration::from_secs(5));
    assert_eq!(
        *r.seen.finished.lock().unwrap(),
        vec![2, 1, 0],
        "each outcome is reported when it is known"
    );
}

#[tokio::test(start_paused = true)]
async fn changes_run_one_at_a_time_in_depends_on_order() {
    // s0 depends on s1 (whose check is slower); s2 and s3 are unrelated.
    let r = run(
        &[
            Fake::Update {
                check: 0,
                apply: 10,
            },
            Fake::Update {
                check: 5,
                apply: 10,
            },
            Fake::Update {
                check: 0,
                apply: 10,
            },
            Fake::UpToDate(0),
        ],
        &[vec![1], vec![], vec![], vec![]],
        None,
    )
    .await;
    assert_eq!(r.seen.most_in_flight.load(Ordering::SeqCst), 1);
    let applied = r.applied();
    let order: Vec<usize> = applied.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        order,
        vec![2, 1, 0],
        "s2 first (ready at once), then s1, then s0 after s1"
    );
    assert_eq!(
        applied[1].1, 10,
        "s1 waited for the lock only, not for anyone's check"
    );
    for i in 0..3 {
        assert_eq!(r.result(i).0, ServiceResult::Updated);
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_that_waits_for_a_hung_dependency_goes_on_at_its_deadline() {
    // s0 depends on s1, whose check hangs: s0's change waits for s1's deadline, then runs.
    let r = run(
        &[Fake::Update { check: 0, apply: 1 }, Fake::Hangs],
        &[vec![1], vec![]],
        None,
    )
    .await;
    assert_eq!(r.applied(), vec![(0, 120)]);
    assert_eq!(r.result(1).0, ServiceResult::CheckFailed);
}

#[tokio::test(start_paused = true)]
async fn stopping_cancels_checks_and_holds_changes_not_started_but_lets_a_running_one_finish() {
    let start = TokioInstant::now();
    let r = run(
        &[
            Fake::Hangs,
            Fake::Update {
                check: 0,
                apply: 30,
            },
            Fake::Update {
                check: 0,
                apply: 30,
            },
        ],
        &none(3),
        Some(1),
    )
    .await;
    assert_eq!(r.result(0).0, ServiceResult::Skipped);
    assert!(r.result(0).1.contains("lookout is stopping"));
    assert_eq!(
        r.outcomes[0].duration,
        Duration::from_secs(1),
        "cancelled at once"
    );
    assert_eq!(
        r.result(1).0,
        ServiceResult::Updated,
        "the running change finished"
    );
    assert_eq!(r.outcomes[1].duration, Duration::from_secs(30));
    let (result, reason) = r.result(2);
    assert_eq!(result, ServiceResult::UpdateAvailable);
    assert!(
        reason.contains("not started: lookout is stopping"),
        "{reason}"
    );
    assert_eq!(r.applied().len(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_dependency_index_that_points_nowhere_is_ignored() {
    let r = run(&[Fake::Update { check: 0, apply: 1 }], &[vec![0, 7]], None).await;
    assert_eq!(r.result(0).0, ServiceResult::Updated);
}

#[test]
fn panic_messages_are_read_from_str_and_string_payloads() {
    let p = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
    assert_eq!(panic_message(&*p), "plain");
    let n = 3;
    let p = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
    assert_eq!(panic_message(&*p), "formatted 3");
    let p = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
    assert_eq!(panic_message(&*p), "(no message)");
}

#[tokio::test(start_paused = true)]
async fn durations_are_each_service_s_own_check_and_change_not_the_waits_for_others() {
    // Three changes of 3 s behind one update lock: the last waits 6 s for it, and a service
    // whose check takes 2 s finishes after all of them; none of the waiting is its own time.
    let r = run(
        &[
            Fake::Update { check: 1, apply: 3 },
            Fake::Update { check: 1, apply: 3 },
            Fake::Update { check: 1, apply: 3 },
            Fake::UpToDate(2),
        ],
        &none(4),
        None,
    )
    .await;
    for i in 0..3 {
        let o = &r.outcomes[i];
        assert_eq!(o.result, ServiceResult::Updated);
        assert_eq!(o.check_duration, Duration::from_secs(1), "s{i}: {o:?}");
        assert_eq!(o.duration, Duration::from_secs(4), "s{i}: {o:?}");
    }
    let idle = &r.outcomes[3];
    assert_eq!(idle.check_duration, Duration::from_secs(2));
    assert_eq!(idle.duration, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn independent_changes_run_together_up_to_the_concurrency_and_one_file_at_a_time() {
    // Five changes of 3 s: s0..s2 in three files, s3 and s4 in s0's file; s2 depends on s1.
    let update = Fake::Update { check: 1, apply: 3 };
    let files: Vec<String> = ["a", "b", "c", "a", "a"].map(String::from).to_vec();
    let after = vec![vec![], vec![], vec![1], vec![], vec![]];
    let r = run_with(&[update; 5], &after, &files, 5, None).await;
    for i in 0..5 {
        assert_eq!(r.result(i).0, ServiceResult::Updated);
        assert_eq!(r.outcomes[i].duration, Duration::from_secs(4), "s{i}");
    }
    let mut applied = r.applied();
    applied.sort();
    assert_eq!(
        applied,
        vec![(0, 1), (1, 1), (2, 4), (3, 4), (4, 7)],
        "s0 and s1 at once; s2 after s1; s3 and s4 after s0 and each other"
    );
    assert_eq!(r.seen.most_in_flight.load(Ordering::SeqCst), 2);

    // Five independent services with update_concurrency = 5 finish in the time of one.
    let files: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    let started = TokioInstant::now();
    let r = run_with(&[update; 5], &none(5), &files, 5, None).await;
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert_eq!(r.seen.most_in_flight.load(Ordering::SeqCst), 5);

    // The limit holds: with 2, the five take three rounds.
    let started = TokioInstant::now();
    let r = run_with(&[update; 5], &none(5), &files, 2, None).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1 + 3 * 3));
    assert_eq!(r.seen.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rollback_waits_for_changes_in_flight_and_holds_new_ones() {
    let gate = UpdateGate::new(4);
    let a = gate.change(Path::new("a")).await;
    let b = gate.change(Path::new("b")).await;
    let exclusive = gate.exclusive();
    tokio::pin!(exclusive);
    assert!(
        futures_util::poll!(exclusive.as_mut()).is_pending(),
        "changes run"
    );
    drop((a, b));
    let held = exclusive.await;
    let c = gate.change(Path::new("c"));
    tokio::pin!(c);
    assert!(
        futures_util::poll!(c.as_mut()).is_pending(),
        "held during the rollback"
    );
    drop(held);
    c.await;
}
