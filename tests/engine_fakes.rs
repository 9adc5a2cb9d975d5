//! The engine in process, on the fakes of `util::fakes`: a pass that updates, a candidate that
//! fails its health gate and is rolled back, and recovery of updates a killed lookout left in
//! the journal. The same paths run on the real Docker engine in `engine.rs`.

use std::sync::Arc;
use std::time::Duration;

use lookout::engine::{Engine, PassOptions, ServiceResult, lock};
use lookout::runtime::Health;
use lookout::schedule::Clock;
use lookout::state::{ChangeOutcome, Recovery};

use crate::util::fakes::{FakeCompose, FakeHost, FakeRuntime, WEB, digest};

/// A clock that always reads the same instant, to see which timestamps come from it.
#[derive(Debug)]
struct Fixed(jiff::Timestamp);

impl Clock for Fixed {
    fn now(&self) -> jiff::Timestamp {
        self.0
    }
}

fn opts() -> PassOptions {
    PassOptions {
        actor: "cli".into(),
        ..PassOptions::default()
    }
}

/// The compose file with the web service's tag replaced, and nothing else.
fn with_web_tag(before: &[u8], tag: &str) -> Vec<u8> {
    let text = String::from_utf8(before.to_vec()).unwrap();
    let old = "\"registry.test:5000/team/web:1.0.0\"";
    assert_eq!(text.matches(old).count(), 1);
    text.replace(old, &format!("\"registry.test:5000/team/web:{tag}\""))
        .into_bytes()
}

fn metric(engine: &Engine<FakeRuntime, FakeCompose>, line: &str) -> bool {
    engine.telemetry.render_metrics().lines().any(|l| l == line)
}

#[tokio::test]
async fn a_pass_updates_a_service_changing_only_its_image_value() {
    let host = FakeHost::new("fakes-pass-update", "");
    let new_digest = host.publish("1.1.0", Some(Health::Healthy));
    let old_id = host.runtime.image_id(&format!("{WEB}:1.0.0")).unwrap();
    let db_before = host.runtime.running("app", "db");
    let before = host.compose_bytes();
    let at: jiff::Timestamp = "2030-01-02T03:04:05Z".parse().unwrap();
    let (engine, _deliveries) = host.engine_with(Arc::new(Fixed(at)));

    let outcomes = engine.pass(&opts()).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let outcome = &outcomes[0];
    assert_eq!(outcome.result, ServiceResult::Updated, "{outcome:?}");
    assert_eq!(
        outcome.from.as_deref(),
        Some("registry.test:5000/team/web:1.0.0")
    );
    assert_eq!(outcome.digest.as_deref(), Some(new_digest.as_str()));

    // The file changed at the image value only, and what it names now runs.
    assert_eq!(host.compose_bytes(), with_web_tag(&before, "1.1.0"));
    let (running_id, running_ref) = host.runtime.running("app", "web").unwrap();
    assert_eq!(running_ref, "registry.test:5000/team/web:1.1.0");
    assert_eq!(
        Some(running_id),
        host.runtime.image_id(&format!("{WEB}@{new_digest}"))
    );
    assert_eq!(
        host.runtime.running("app", "db"),
        db_before,
        "db was left alone"
    );
    // The old image is kept under the rollback tag; it was pulled by digest.
    assert_eq!(
        host.runtime
            .image_id(&format!("{WEB}:lookout-rollback-web")),
        Some(old_id)
    );
    assert!(
        host.runtime
            .calls()
            .contains(&format!("pull {WEB}@{new_digest}")),
        "{:?}",
        host.runtime.calls()
    );
    assert_eq!(host.compose.ups(), 1);

    // Committed in the state, stamped by the engine's clock.
    {
        let store = lock(&engine.store);
        let state = store.state();
        assert!(state.journal.is_empty(), "{:?}", state.journal);
        let web = &state.services["web"];
        let last = web.history.last().expect("a history entry");
        assert_eq!(last.outcome, ChangeOutcome::Committed);
        assert_eq!(last.to.tag.as_deref(), Some("1.1.0"));
        assert_eq!(last.to.digest, new_digest);
        assert_eq!(last.actor, "cli");
        assert_eq!((last.started_at, last.finished_at), (at, at));
        assert_eq!(web.last_check, Some(at));
        assert!(web.failed_candidate.is_none());
    }
    // The event became a metric.
    assert!(metric(
        &engine,
        r#"lookout_updates_total{result="updated",service="web"} 1"#
    ));

    // The next pass finds it up to date and changes nothing.
    let again = engine.pass(&opts()).await;
    assert_eq!(again[0].result, ServiceResult::UpToDate, "{again:?}");
    assert_eq!(host.compose.ups(), 1);
}

#[tokio::test]
async fn an_unhealthy_candidate_is_rolled_back_and_blocked() {
    let host = FakeHost::new("fakes-rollback", "");
    let bad = host.publish("1.1.0", Some(Health::Unhealthy));
    let old_id = host.runtime.image_id(&format!("{WEB}:1.0.0")).unwrap();
    let before = host.compose_bytes();
    let (engine, _deliveries) = host.engine();

    let outcomes = engine.pass(&opts()).await;
    let outcome = &outcomes[0];
    assert_eq!(outcome.result, ServiceResult::RolledBack, "{outcome:?}");
    assert_eq!(outcome.stage.as_deref(), Some("health"), "{outcome:?}");

    // Everything put back: the exact bytes, the old image under its own tag, running.
    assert_eq!(host.compose_bytes(), before);
    let (running_id, running_ref) = host.runtime.running("app", "web").unwrap();
    assert_eq!(running_id, old_id);
    assert_eq!(running_ref, "registry.test:5000/team/web:1.0.0");
    assert_eq!(
        host.runtime.image_id(&format!("{WEB}:1.0.0")),
        Some(old_id.clone())
    );
    assert_eq!(
        host.compose.ups(),
        2,
        "up with the candidate, then with the old image"
    );
    {
        let store = lock(&engine.store);
        let web = &store.state().services["web"];
        assert!(matches!(
            web.history.last().map(|h| &h.outcome),
            Some(ChangeOutcome::RolledBack { .. })
        ));
        let failed = web
            .failed_candidate
            .as_ref()
            .expect("the candidate is blocked");
        assert_eq!(failed.version.digest, bad);
        assert!(store.state().journal.is_empty());
    }
    assert!(metric(
        &engine,
        r#"lookout_rollbacks_total{service="web"} 1"#
    ));

    // The next pass holds the candidate: no pull, no up, the file as it was.
    let calls = host.runtime.calls().len();
    let again = engine.pass(&opts()).await;
    assert_eq!(again[0].result, ServiceResult::UpdateAvailable, "{again:?}");
    assert!(
        again[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("failed before"),
        "{again:?}"
    );
    assert_eq!(
        host.runtime.calls().len(),
        calls,
        "{:?}",
        host.runtime.calls()
    );
    assert_eq!(host.compose.ups(), 2);
    assert_eq!(host.compose_bytes(), before);

    // A different candidate is tried again.
    host.publish("1.2.0", Some(Health::Healthy));
    let third = engine.pass(&opts()).await;
    assert_eq!(third[0].result, ServiceResult::Updated, "{third:?}");
    assert_eq!(host.compose_bytes(), with_web_tag(&before, "1.2.0"));
}

/// Runs a pass until `after`, then drops it where it is: lookout killed in the middle.
async fn interrupted_pass(engine: Engine<FakeRuntime, FakeCompose>, after: Duration) {
    let cut = tokio::time::timeout(after, engine.pass(&opts())).await;
    assert!(cut.is_err(), "the pass was meant to be cut off: {cut:?}");
    let store = lock(&engine.store);
    assert_eq!(store.in_flight().len(), 1, "the journal holds the update");
    drop(store);
    drop(engine); // releases the state lock, as the process's end would
}

#[tokio::test]
async fn recovery_rolls_back_an_update_cut_off_during_compose_up() {
    let host = FakeHost::new("fakes-recover-up", "");
    host.publish("1.1.0", Some(Health::Healthy));
    let old_id = host.runtime.image_id(&format!("{WEB}:1.0.0")).unwrap();
    let before = host.compose_bytes();
    host.compose.hang_up(true);
    let (engine, _deliveries) = host.engine();
    interrupted_pass(engine, Duration::from_millis(500)).await;
    assert_eq!(
        host.compose_bytes(),
        with_web_tag(&before, "1.1.0"),
        "the file was written before the cut"
    );

    host.compose.hang_up(false);
    let (engine, _deliveries) = host.engine();
    let recovered = engine.recover().await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let r = &recovered[0];
    assert_eq!(r.decision, Recovery::RollBack, "{r:?}");
    assert!(r.closed, "{r:?}");
    assert!(
        matches!(r.outcome, Some(ChangeOutcome::Abandoned { .. })),
        "{r:?}"
    );
    assert_eq!(host.compose_bytes(), before);
    assert_eq!(host.runtime.running("app", "web").unwrap().0, old_id);
    assert_eq!(host.runtime.image_id(&format!("{WEB}:1.0.0")), Some(old_id));
    {
        let store = lock(&engine.store);
        assert!(store.in_flight().is_empty());
        // An update cut off before its gate proved nothing against the candidate.
        assert!(store.state().services["web"].failed_candidate.is_none());
    }
    // So the next pass tries it again, and it works.
    let outcomes = engine.pass(&opts()).await;
    assert_eq!(outcomes[0].result, ServiceResult::Updated, "{outcomes:?}");
}

#[tokio::test]
async fn recovery_commits_an_update_cut_off_during_its_health_gate() {
    let host = FakeHost::new("fakes-recover-gate", "");
    let new_digest = host.publish("1.1.0", Some(Health::Starting));
    let before = host.compose_bytes();
    let (engine, _deliveries) = host.engine();
    // The gate waits for `starting` to end (health_timeout 2 s); cut it at 0.7 s.
    interrupted_pass(engine, Duration::from_millis(700)).await;
    assert_eq!(host.compose.ups(), 1);

    // Meanwhile the new container became healthy.
    host.runtime
        .set_health(&format!("{WEB}@{new_digest}"), Some(Health::Healthy));
    let (engine, _deliveries) = host.engine();
    let recovered = engine.recover().await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].decision, Recovery::Commit, "{recovered:?}");
    assert_eq!(recovered[0].outcome, Some(ChangeOutcome::Committed));
    assert_eq!(host.compose_bytes(), with_web_tag(&before, "1.1.0"));
    assert_eq!(host.compose.ups(), 1, "nothing was recreated");
    let store = lock(&engine.store);
    assert!(store.in_flight().is_empty());
    let last = store.state().services["web"]
        .history
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last.outcome, ChangeOutcome::Committed);
    assert_eq!(last.to.digest, new_digest);
    drop(store);
    assert_ne!(new_digest, digest("web 1.0.0"));
}

/// The host's compose file with web's tag in `${WEB_TAG:-1.0.0}` and no `.env`: an update
/// creates `app/.env`. Returns that path.
fn tag_in_a_variable_with_a_default(host: &FakeHost) -> std::path::PathBuf {
    let text = String::from_utf8(host.compose_bytes()).unwrap();
    let text = text.replace("team/web:1.0.0\"", "team/web:${WEB_TAG:-1.0.0}\"");
    std::fs::write(&host.compose_file, text).unwrap();
    let env = host.compose_file.parent().unwrap().join(".env");
    assert!(!env.exists());
    env
}

#[tokio::test]
async fn an_env_file_the_update_created_is_removed_by_its_rollback() {
    let host = FakeHost::new("fakes-created-env-rollback", "");
    let env = tag_in_a_variable_with_a_default(&host);
    let compose_before = host.compose_bytes();
    host.publish("1.1.0", Some(Health::Unhealthy));
    let old_id = host.runtime.image_id(&format!("{WEB}:1.0.0")).unwrap();
    let (engine, _deliveries) = host.engine();
    let outcomes = engine.pass(&opts()).await;
    assert_eq!(
        outcomes[0].result,
        ServiceResult::RolledBack,
        "{outcomes:?}"
    );
    assert!(!env.exists(), "the .env lookout created is gone");
    assert_eq!(host.compose_bytes(), compose_before);
    assert_eq!(host.runtime.running("app", "web").unwrap().0, old_id);

    // A healthy candidate: the .env is created and stays.
    host.publish("1.2.0", Some(Health::Healthy));
    let outcomes = engine.pass(&opts()).await;
    assert_eq!(outcomes[0].result, ServiceResult::Updated, "{outcomes:?}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "WEB_TAG=1.2.0\n");
    assert_eq!(host.compose_bytes(), compose_before);
    let (_, running_ref) = host.runtime.running("app", "web").unwrap();
    assert_eq!(running_ref, "registry.test:5000/team/web:1.2.0");
}

#[tokio::test]
async fn recovery_removes_an_env_file_an_interrupted_update_created() {
    let host = FakeHost::new("fakes-recover-created-env", "");
    let env = tag_in_a_variable_with_a_default(&host);
    let compose_before = host.compose_bytes();
    host.publish("1.1.0", Some(Health::Healthy));
    let old_id = host.runtime.image_id(&format!("{WEB}:1.0.0")).unwrap();
    host.compose.hang_up(true);
    let (engine, _deliveries) = host.engine();
    interrupted_pass(engine, Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "WEB_TAG=1.1.0\n");
    // The journal on disk says the file is lookout's creation.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(host.state_file()).unwrap()).unwrap();
    let file = &state["journal"][0]["intent"]["file"];
    assert_eq!(file["created"], true, "{file}");
    assert_eq!(file["path"], env.display().to_string(), "{file}");

    host.compose.hang_up(false);
    let (engine, _deliveries) = host.engine();
    let recovered = engine.recover().await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let r = &recovered[0];
    assert_eq!(r.decision, Recovery::RollBack, "{r:?}");
    assert!(r.closed, "{r:?}");
    assert!(
        !env.exists(),
        "recovery removed the file instead of writing it empty"
    );
    assert_eq!(host.compose_bytes(), compose_before);
    assert_eq!(host.runtime.running("app", "web").unwrap().0, old_id);

    // The journal is closed; the candidate, cut off before its gate, is tried again.
    assert!(lock(&engine.store).in_flight().is_empty());
    let outcomes = engine.pass(&opts()).await;
    assert_eq!(outcomes[0].result, ServiceResult::Updated, "{outcomes:?}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "WEB_TAG=1.1.0\n");
}

/// An idle pass asks Docker for one list of the compose containers, one inspection per image
/// in use, and inspects a container only the first time it sees it.
#[tokio::test]
async fn an_idle_pass_lists_containers_once_and_inspects_only_new_ones() {
    // A second service, db (digest policy), in the same project.
    let host = FakeHost::new("fakes-docker-calls", "");
    let config = std::fs::read_to_string(&host.config_path).unwrap();
    let db = format!(
        "\n[[services]]\nname = \"db\"\ncompose_file = \"{}\"\ncompose_service = \"db\"\nimage = \"registry.test:5000/team/db:16\"\n",
        host.compose_file.display()
    );
    std::fs::write(&host.config_path, config + &db).unwrap();
    host.registry.push("team/db", "16", &digest("db 16"));
    let (engine, _deliveries) = host.engine();
    let reads = |m: &str| host.runtime.reads(m);

    let outcomes = engine.pass(&opts()).await;
    assert!(
        outcomes.iter().all(|o| o.result == ServiceResult::UpToDate),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 2);
    assert_eq!(reads("compose_containers"), 1, "one list for the pass");
    assert_eq!(reads("service_containers"), 0);
    assert_eq!(reads("container"), 2, "each container once");
    assert_eq!(reads("image"), 2, "each image in use once");

    engine.pass(&opts()).await;
    assert_eq!(reads("compose_containers"), 2);
    assert_eq!(reads("container"), 2, "no container is new");
    assert_eq!(
        reads("image"),
        2,
        "images with a registry digest are kept from the last pass"
    );

    // A new version of web: the pass that updates it forgets the kept images (its pull adds
    // digests), so the next pass asks for each image in use again, once.
    host.publish("1.1.0", Some(Health::Healthy));
    let outcomes = engine.pass(&opts()).await;
    assert!(
        outcomes.iter().any(|o| o.result == ServiceResult::Updated),
        "{outcomes:?}"
    );
    let before = reads("image");
    engine.pass(&opts()).await;
    assert_eq!(
        reads("image"),
        before + 2,
        "each image in use asked again once"
    );
    engine.pass(&opts()).await;
    assert_eq!(reads("image"), before + 2, "then kept again");
}
