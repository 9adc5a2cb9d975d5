use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::runtime::{ImageInfo, ImageRemoval, RegistryLogin, RuntimeError};

const IMAGE: &str = "sha256:aaaa";
const OTHER: &str = "sha256:bbbb";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn opts() -> GateOptions {
    GateOptions {
        timeout: secs(60),
        stable: secs(10),
        probe_url: None,
        poll: secs(1),
    }
}

fn with_probe() -> GateOptions {
    GateOptions {
        probe_url: Some("http://user:pw@127.0.0.1:8080/health".into()),
        ..opts()
    }
}

/// A running container on IMAGE, started once, without healthcheck.
fn running() -> ContainerInfo {
    ContainerInfo {
        id: "c1".into(),
        name: "app-web-1".into(),
        image_id: IMAGE.into(),
        image_ref: "registry/app:2".into(),
        state: ContainerState::Running,
        health: None,
        health_log: None,
        restart_count: 0,
        exit_code: None,
        oom_killed: false,
        started_at: Some("2025-01-01T00:00:00Z".into()),
        has_healthcheck: false,
    }
}

fn checked(health: Health) -> ContainerInfo {
    ContainerInfo {
        has_healthcheck: true,
        health: Some(health),
        ..running()
    }
}

/// Expected verdict, loosely: the failure variant is matched by its Display text fragment.
enum Want {
    Pass,
    Wait(&'static str),
    Fail(&'static str),
}

/// Judges `now` against a first look at the same container while it was `running()`.
#[track_caller]
fn check(
    now: ContainerInfo,
    probe: Option<ProbeResult>,
    elapsed: u64,
    opts: &GateOptions,
    want: Want,
) {
    check_from(&running(), now, probe, elapsed, opts, want);
}

#[track_caller]
fn check_from(
    first: &ContainerInfo,
    now: ContainerInfo,
    probe: Option<ProbeResult>,
    elapsed: u64,
    opts: &GateOptions,
    want: Want,
) {
    let obs = Observation {
        container: now,
        probe,
    };
    let got = judge(&obs, first, secs(elapsed), IMAGE, opts);
    match (&got, want) {
        (Verdict::Pass, Want::Pass) => {}
        (Verdict::KeepWaiting(why), Want::Wait(fragment)) if why.contains(fragment) => {}
        (Verdict::Fail(f), Want::Fail(fragment)) if f.to_string().contains(fragment) => {}
        (_, Want::Pass) => panic!("want Pass, got {got:?}"),
        (_, Want::Wait(f)) => panic!("want KeepWaiting containing {f:?}, got {got:?}"),
        (_, Want::Fail(f)) => panic!("want Fail containing {f:?}, got {got:?}"),
    }
}

#[test]
fn containers_with_a_healthcheck_wait_for_healthy() {
    check(checked(Health::Healthy), None, 0, &opts(), Want::Pass);
    check(
        checked(Health::Starting),
        None,
        5,
        &opts(),
        Want::Wait("health is starting"),
    );
    check(
        checked(Health::Starting),
        None,
        60,
        &opts(),
        Want::Fail("not healthy after 60s: app-web-1: health is starting"),
    );
    // No stable period for a container with a healthcheck: healthy is enough.
    check(checked(Health::Healthy), None, 1, &opts(), Want::Pass);
}

#[test]
fn unhealthy_fails_at_once_with_the_last_check_output() {
    let sick = ContainerInfo {
        health_log: Some("exit code 1: connection refused".into()),
        ..checked(Health::Unhealthy)
    };
    check(
        sick,
        None,
        3,
        &opts(),
        Want::Fail("unhealthy; last healthcheck: exit code 1: connection refused"),
    );
    check(
        checked(Health::Unhealthy),
        None,
        3,
        &opts(),
        Want::Fail("(no healthcheck output)"),
    );
}

#[test]
fn containers_without_healthcheck_must_stay_running_for_the_stable_period() {
    check(
        running(),
        None,
        0,
        &opts(),
        Want::Wait("for 0s of the 10s stable"),
    );
    check(
        running(),
        None,
        9,
        &opts(),
        Want::Wait("for 9s of the 10s stable"),
    );
    check(running(), None, 10, &opts(), Want::Pass);
    let short = GateOptions {
        stable: secs(2),
        ..opts()
    };
    check(running(), None, 2, &short, Want::Pass);
    // A stable period longer than the timeout can never pass: it times out.
    let impossible = GateOptions {
        stable: secs(100),
        ..opts()
    };
    check(
        running(),
        None,
        60,
        &impossible,
        Want::Fail("not healthy after 60s"),
    );
}

#[test]
fn exits_and_restarts_fail() {
    let exited = ContainerInfo {
        state: ContainerState::Exited,
        exit_code: Some(3),
        ..running()
    };
    check(
        exited.clone(),
        None,
        4,
        &opts(),
        Want::Fail("exited with code 3"),
    );
    // Exit code 0 is still a service that is down.
    let clean = ContainerInfo {
        exit_code: Some(0),
        ..exited
    };
    check(clean, None, 4, &opts(), Want::Fail("exited with code 0"));
    let dead = ContainerInfo {
        state: ContainerState::Dead,
        exit_code: None,
        ..running()
    };
    check(dead, None, 4, &opts(), Want::Fail("the container exited"));
    let restarting = ContainerInfo {
        state: ContainerState::Restarting,
        restart_count: 1,
        ..running()
    };
    check(
        restarting,
        None,
        4,
        &opts(),
        Want::Fail("restarted (restart count 1)"),
    );
    // Back to running between two looks: the count gives it away.
    let bounced = ContainerInfo {
        restart_count: 2,
        ..running()
    };
    check(bounced, None, 12, &opts(), Want::Fail("restart count 2"));
    // Started again by hand (no restart policy): the start time gives it away.
    let restarted_by_hand = ContainerInfo {
        started_at: Some("2025-01-01T00:00:05Z".into()),
        ..running()
    };
    check(
        restarted_by_hand,
        None,
        12,
        &opts(),
        Want::Fail("restarted"),
    );
    // A healthy container that restarted fails as well.
    let healthy_again = ContainerInfo {
        restart_count: 1,
        ..checked(Health::Healthy)
    };
    check(healthy_again, None, 12, &opts(), Want::Fail("restarted"));
}

#[test]
fn a_container_on_another_image_fails_first() {
    let wrong = ContainerInfo {
        image_id: OTHER.into(),
        ..checked(Health::Healthy)
    };
    check(
        wrong,
        None,
        0,
        &opts(),
        Want::Fail("runs image sha256:bbbb, not the expected sha256:aaaa"),
    );
    // The prefix does not matter.
    let unprefixed = ContainerInfo {
        image_id: "aaaa".into(),
        ..checked(Health::Healthy)
    };
    check(unprefixed, None, 0, &opts(), Want::Pass);
}

#[test]
fn created_or_paused_containers_are_waited_for() {
    let created = ContainerInfo {
        state: ContainerState::Created,
        started_at: None,
        ..running()
    };
    check_from(
        &created,
        created.clone(),
        None,
        3,
        &opts(),
        Want::Wait("app-web-1 is created"),
    );
    check_from(
        &created,
        created.clone(),
        None,
        60,
        &opts(),
        Want::Fail("app-web-1 is created"),
    );
    // Seen created, then running: a first start is not a restart.
    check_from(&created, running(), None, 10, &opts(), Want::Pass);
    let paused = ContainerInfo {
        state: ContainerState::Paused,
        ..running()
    };
    check(paused, None, 30, &opts(), Want::Wait("is paused"));
}

#[test]
fn a_probe_must_answer_2xx_after_the_container_passed() {
    let ok = Some(ProbeResult::Ok { status: 204 });
    let refused = Some(ProbeResult::Failed {
        detail: "connection refused".into(),
    });
    check(
        checked(Health::Healthy),
        ok.clone(),
        1,
        &with_probe(),
        Want::Pass,
    );
    check(
        checked(Health::Healthy),
        refused.clone(),
        1,
        &with_probe(),
        Want::Wait("probe http://127.0.0.1:8080/health: connection refused"),
    );
    check(
        checked(Health::Healthy),
        None,
        1,
        &with_probe(),
        Want::Wait("not tried yet"),
    );
    // At the timeout a failing probe is the reason, without the URL's password.
    check(
        checked(Health::Healthy),
        refused,
        60,
        &with_probe(),
        Want::Fail("probe http://127.0.0.1:8080/health did not answer 2xx: connection refused"),
    );
    // A good probe does not make up for an unhealthy container or a short stable period.
    check(
        checked(Health::Starting),
        ok.clone(),
        1,
        &with_probe(),
        Want::Wait("health is starting"),
    );
    check(
        running(),
        ok.clone(),
        3,
        &with_probe(),
        Want::Wait("stable period"),
    );
    check(running(), ok, 10, &with_probe(), Want::Pass);
}

#[test]
fn failure_messages_never_show_probe_credentials() {
    let got = judge(
        &Observation {
            container: checked(Health::Healthy),
            probe: Some(ProbeResult::Failed {
                detail: "HTTP 503".into(),
            }),
        },
        &running(),
        secs(61),
        IMAGE,
        &with_probe(),
    );
    let Verdict::Fail(failure) = got else {
        panic!("{got:?}")
    };
    assert!(!failure.to_string().contains("pw"), "{failure}");
}

/// A runtime that answers `service_containers` from a script: one answer per call, the last
/// one repeated.
struct Scripted {
    answers: Mutex<Vec<Result<Vec<ContainerInfo>, String>>>,
    calls: Mutex<u32>,
}

impl Scripted {
    fn new(answers: Vec<Result<Vec<ContainerInfo>, String>>) -> Self {
        Self {
            answers: Mutex::new(answers),
            calls: Mutex::new(0),
        }
    }

    fn calls(&self) -> u32 {
        *self.calls.lock().unwrap()
    }
}

impl ContainerRuntime for Scripted {
    async fn pull(&self, _: &str, _: Option<&RegistryLogin>) -> Result<(), RuntimeError> {
        unreachable!("the gate does not pull")
    }
    async fn image(&self, _: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        unreachable!("the gate does not inspect images")
    }
    async fn tag(&self, _: &str, _: &str, _: &str) -> Result<(), RuntimeError> {
        unreachable!("the gate does not tag")
    }
    async fn remove_image(&self, _: &str) -> Result<ImageRemoval, RuntimeError> {
        unreachable!("the gate does not remove images")
    }
    async fn service_containers(
        &self,
        _project: &str,
        _service: &str,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        *self.calls.lock().unwrap() += 1;
        let mut answers = self.answers.lock().unwrap();
        let answer = if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        };
        answer.map_err(|message| RuntimeError::Api {
            action: "list containers".into(),
            status: Some(500),
            message,
        })
    }
    async fn compose_containers(
        &self,
    ) -> Result<Vec<crate::runtime::ContainerSummary>, RuntimeError> {
        unreachable!("the gate does not list every container")
    }
    async fn containers(&self) -> Result<Vec<crate::runtime::ContainerSummary>, RuntimeError> {
        unreachable!("the gate does not list every container")
    }
    async fn container_events(
        &self,
        _: tokio::sync::mpsc::Sender<crate::runtime::ContainerEvent>,
    ) -> Result<(), RuntimeError> {
        unreachable!("the gate does not follow events")
    }
    async fn version(&self) -> Result<String, RuntimeError> {
        unreachable!("the gate does not ask the engine's version")
    }
    async fn container(&self, _: &str) -> Result<ContainerInfo, RuntimeError> {
        unreachable!("the gate lists the service's containers")
    }
    async fn inspect_container(
        &self,
        _: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, RuntimeError> {
        unreachable!("the gate does not inspect containers whole")
    }
    async fn image_config(
        &self,
        _: &str,
    ) -> Result<Option<bollard::models::ImageConfig>, RuntimeError> {
        unreachable!("the gate does not inspect images")
    }
    async fn all_containers(
        &self,
    ) -> Result<Vec<bollard::models::ContainerInspectResponse>, RuntimeError> {
        unreachable!("the gate does not list every container")
    }
    async fn create_container(
        &self,
        _: &str,
        _: bollard::models::ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        unreachable!("the gate does not create containers")
    }
    async fn start_container(&self, _: &str) -> Result<(), RuntimeError> {
        unreachable!("the gate does not start containers")
    }
    async fn stop_container(&self, _: &str) -> Result<(), RuntimeError> {
        unreachable!("the gate does not stop containers")
    }
    async fn rename_container(&self, _: &str, _: &str) -> Result<(), RuntimeError> {
        unreachable!("the gate does not rename containers")
    }
    async fn remove_container(&self, _: &str) -> Result<(), RuntimeError> {
        unreachable!("the gate does not remove containers")
    }
    async fn connect_network(
        &self,
        _: &str,
        _: &str,
        _: bollard::models::EndpointSettings,
    ) -> Result<(), RuntimeError> {
        unreachable!("the gate does not connect networks")
    }
}

#[tokio::test(start_paused = true)]
async fn wait_healthy_passes_once_the_stable_period_is_over() {
    let rt = Scripted::new(vec![Ok(vec![running()])]);
    let start = tokio::time::Instant::now();
    let passed = wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap();
    assert_eq!(passed.id, "c1");
    assert_eq!(start.elapsed(), secs(10));
    assert_eq!(rt.calls(), 11);
}

#[tokio::test(start_paused = true)]
async fn wait_healthy_follows_health_from_starting_to_healthy() {
    let rt = Scripted::new(vec![
        Ok(vec![checked(Health::Starting)]),
        Ok(vec![checked(Health::Starting)]),
        Ok(vec![checked(Health::Healthy)]),
    ]);
    let start = tokio::time::Instant::now();
    wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), secs(2));
}

#[tokio::test(start_paused = true)]
async fn wait_healthy_reports_a_restart_between_two_looks() {
    let rt = Scripted::new(vec![
        Ok(vec![running()]),
        Ok(vec![ContainerInfo {
            restart_count: 1,
            ..running()
        }]),
    ]);
    let failure = wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap_err();
    assert_eq!(failure, GateFailure::Restarted { count: 1 });
}

#[tokio::test(start_paused = true)]
async fn every_container_of_a_scaled_service_must_pass() {
    let second = ContainerInfo {
        id: "c2".into(),
        name: "app-web-2".into(),
        ..checked(Health::Starting)
    };
    let second_sick = ContainerInfo {
        health: Some(Health::Unhealthy),
        health_log: Some("boom".into()),
        ..second.clone()
    };
    let rt = Scripted::new(vec![
        Ok(vec![checked(Health::Healthy), second]),
        Ok(vec![checked(Health::Healthy), second_sick]),
    ]);
    let failure = wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap_err();
    assert_eq!(failure, GateFailure::Unhealthy { log: "boom".into() });
}

#[tokio::test(start_paused = true)]
async fn no_container_fails_at_the_timeout_or_when_it_vanishes() {
    let rt = Scripted::new(vec![Ok(vec![])]);
    let start = tokio::time::Instant::now();
    let failure = wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap_err();
    assert_eq!(failure, GateFailure::NoContainer);
    assert_eq!(start.elapsed(), secs(60));

    let rt = Scripted::new(vec![Ok(vec![running()]), Ok(vec![])]);
    let start = tokio::time::Instant::now();
    let failure = wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap_err();
    assert_eq!(failure, GateFailure::NoContainer);
    assert_eq!(start.elapsed(), secs(1));
}

#[tokio::test(start_paused = true)]
async fn docker_errors_are_retried_and_named_at_the_timeout() {
    // A passing look after two errors passes.
    let rt = Scripted::new(vec![
        Err("daemon busy".into()),
        Err("daemon busy".into()),
        Ok(vec![checked(Health::Healthy)]),
    ]);
    wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap();

    let rt = Scripted::new(vec![Err("daemon busy".into())]);
    let failure = wait_healthy(&rt, "app", "web", IMAGE, &opts())
        .await
        .unwrap_err();
    let GateFailure::TimedOut { waited, last } = failure else {
        panic!("{failure:?}")
    };
    assert_eq!(waited, secs(60));
    assert!(last.contains("status 500: daemon busy"), "{last}");
}

/// `health_timeout = 18446744073709551615` (any duration the configuration lets through): the
/// gate neither panics nor overflows; it passes or fails on what the container does.
#[tokio::test(start_paused = true)]
async fn a_huge_timeout_neither_panics_nor_overflows() {
    let forever = GateOptions {
        timeout: Duration::MAX,
        stable: Duration::MAX,
        poll: Duration::MAX,
        ..opts()
    };
    let rt = Scripted::new(vec![Ok(vec![checked(Health::Healthy)])]);
    assert!(
        wait_healthy(&rt, "app", "web", IMAGE, &forever)
            .await
            .is_ok()
    );
    let exited = ContainerInfo {
        state: ContainerState::Exited,
        exit_code: Some(1),
        ..running()
    };
    let rt = Scripted::new(vec![Ok(vec![exited])]);
    let failure = wait_healthy(&rt, "app", "web", IMAGE, &forever)
        .await
        .unwrap_err();
    assert!(matches!(failure, GateFailure::Exited { .. }), "{failure}");
    // Judging at the largest elapsed time either way.
    let obs = Observation {
        container: running(),
        probe: None,
    };
    assert_eq!(
        judge(&obs, &running(), Duration::MAX, IMAGE, &forever),
        Verdict::Pass
    );
}
