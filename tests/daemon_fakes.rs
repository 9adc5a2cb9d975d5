//! The daemon loop in process, on the fakes of `util::fakes`: `daemon::serve` gets an engine on
//! the fake runtime, compose and registry, a listener bound here, a short schedule, a reload
//! channel and a shutdown future. The binary's own behaviour is tested in `daemon.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::daemon::{self, Parts, Reload};
use lookout::runtime::Health;
use lookout::schedule::{Schedule, SystemClock};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::util::fakes::{FakeHost, config_text};

const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

/// Polls `probe` every 20 ms until it gives a value, for at most `within`.
async fn eventually<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_its_schedule_serves_the_api_reloads_and_stops() {
    let token_line = format!("api_token = \"{TOKEN}\"");
    let host = FakeHost::new("fakes-daemon", &token_line);
    host.publish("1.1.0", Some(Health::Healthy));
    let (engine, deliveries) = host.engine();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let config_path = host.config_path.clone();
    let reload = Reload {
        requests: reload_rx,
        load: Box::new(move || Ok(lookout::config::load(&config_path)?)),
    };
    let mut parts = Parts::new(
        &host.config(),
        engine,
        deliveries,
        listener,
        Arc::new(SystemClock),
        reload,
    );
    assert_eq!(
        parts
            .api
            .token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .as_deref(),
        Some(TOKEN)
    );
    parts.schedule = Schedule::interval(Duration::from_millis(200), Duration::ZERO);
    parts.first_check_at_start = false;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(daemon::serve(parts, async {
        let _ = stopped.await;
    }));

    // The schedule runs a pass, which updates the service.
    eventually(
        Duration::from_secs(5),
        "a scheduled pass updates web",
        async || {
            let (_, image) = host.runtime.running("app", "web")?;
            (image == "registry.test:5000/team/web:1.1.0").then_some(())
        },
    )
    .await;

    // The API answers on the listener it was given.
    let client = lookout::tls::client();
    let services = get(&client, &format!("{base}/api/v1/services")).await;
    let list = services["services"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{services}");
    assert_eq!(list[0]["name"], "web");
    assert!(
        list[0]["running"].as_str().unwrap_or("").contains("1.1.0"),
        "{services}"
    );
    let checked: Value = client
        .post(format!("{base}/api/v1/check"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(checked["services"][0]["service"], "web", "{checked}");
    assert_eq!(checked["services"][0]["result"], "up_to_date", "{checked}");
    let unauthorised = client
        .get(format!("{base}/api/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);

    // A reload through the channel puts the new configuration in force.
    let second = "\n[[services]]\nname = \"db\"\ncompose_file = \"{file}\"\ncompose_service = \"db\"\nimage = \"registry.test:5000/team/db:16\"\npolicy = \"semver\"\n"
        .replace("{file}", &host.compose_file.display().to_string());
    host.registry
        .push("team/db", "16", &crate::util::fakes::digest("db 16"));
    std::fs::write(
        &host.config_path,
        config_text(&host.scratch, &host.compose_file, &token_line) + &second,
    )
    .unwrap();
    reload_tx.send(()).await.unwrap();
    eventually(Duration::from_secs(5), "the reload adds db", async || {
        let services = get(&client, &format!("{base}/api/v1/services")).await;
        let names: Vec<String> = services["services"]
            .as_array()?
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        (names == ["web", "db"]).then_some(())
    })
    .await;

    // Shutdown ends it promptly.
    drop(client);
    let asked = Instant::now();
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), running).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the daemon did not end cleanly: {ended:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        asked.elapsed()
    );
}
