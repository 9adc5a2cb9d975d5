//! Notification channels against real servers: email to aiosmtpd (STARTTLS and implicit TLS,
//! AUTH required, several recipients, plain-text and HTML parts), MQTT to mosquitto (retained
//! state, Home Assistant discovery, the install command round trip, TLS), Matrix password login
//! against a loopback homeserver that checks the client-server API's wire format, and one
//! summary per pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lookout::daemon::{self, Parts, Reload};
use lookout::runtime::Health;
use lookout::schedule::{Schedule, SystemClock};
use lookout::telemetry::channels::shoutrrr::parse;
use lookout::telemetry::{
    Event, InstallRequest, NotifyMode, NotifySpec, PassService, Retry, Service, Telemetry,
    TelemetrySettings, UpdateInfo,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::util::fake_http::{FakeHttp, Response};
use crate::util::fakes::FakeHost;
use crate::util::servers::{Certs, Mosquitto, Smtp, SmtpTls};
use crate::util::{Scratch, eventually, metric};

const SMTP_USER: &str = "lookout-mailer";
const SMTP_PASSWORD: &str = "smtp-pass-Xq7rT2vL9";
const MQTT_USER: &str = "lookout-mqtt";
const MQTT_PASSWORD: &str = "mqtt-pass-Hw4kP8sN3";

fn update(service: &str) -> UpdateInfo {
    UpdateInfo {
        service: service.into(),
        compose_service: service.into(),
        compose_file: PathBuf::from("/srv/app/compose.yaml"),
        old_image: "nginx:1.27.0".into(),
        new_image: "nginx:1.27.1".into(),
        old_digest: Some("sha256:old".into()),
        new_digest: Some("sha256:new".into()),
        started_at: "2025-01-06T02:00:00Z".parse().unwrap(),
        duration: Some(Duration::from_secs(30)),
    }
}

fn rolled_back(service: &str) -> Event {
    Event::RolledBack {
        update: update(service),
        reason: "health check failed <exit 1> & more".into(),
    }
}

fn service(url: &str) -> Service {
    parse(url).unwrap_or_else(|e| panic!("{url}: {e}")).service
}

fn spec(name: &str, service: Service) -> NotifySpec {
    NotifySpec {
        name: name.into(),
        service,
        events: None,
        mode: NotifyMode::Event,
        timeout: Duration::from_secs(5),
        templates: Default::default(),
    }
}

fn settings(channels: Vec<NotifySpec>) -> TelemetrySettings {
    TelemetrySettings {
        version: "0.0.0-test".into(),
        host: "test-host".into(),
        services: vec!["web".into(), "db".into()],
        registries: Vec::new(),
        webhooks: Vec::new(),
        notify: channels,
        queue_capacity: 16,
        retry: Retry {
            attempts: 2,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
        },
    }
}

fn start(channels: Vec<NotifySpec>) -> (Telemetry, Option<mpsc::Receiver<InstallRequest>>) {
    let (t, mut deliveries) = Telemetry::new(settings(channels), Arc::new(SystemClock));
    let installs = deliveries.take_install_requests();
    tokio::spawn(deliveries.run(std::future::pending()));
    (t, installs)
}

fn count(t: &Telemetry, channel: &str, result: &str) -> f64 {
    let series =
        format!(r#"lookout_notify_deliveries_total{{channel="{channel}",result="{result}"}}"#);
    if t.render_metrics().contains(&series) {
        metric(t, &series)
    } else {
        0.0
    }
}

fn email(url: &str, ca: Option<&Certs>, skip_verify: bool) -> Service {
    let Service::Email(mut e) = service(url) else {
        panic!("{url} is not email")
    };
    e.tls.ca_file = ca.map(|c| c.ca.clone());
    e.tls.skip_verify = skip_verify;
    Service::Email(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_out_over_starttls_with_auth_to_every_recipient() {
    let scratch = Scratch::new("notify-smtp-starttls");
    let certs = Certs::new(&scratch);
    let smtp = Smtp::start(
        &scratch,
        &certs,
        SmtpTls::StartTls,
        SMTP_USER,
        SMTP_PASSWORD,
    );
    let url = |password: &str| {
        format!(
            "smtp://{SMTP_USER}:{password}@127.0.0.1:{}/?fromAddress=lookout@example.org&toAddresses=ops@example.org,dev@example.org&subject=Box&fromName=Lookout+Box",
            smtp.port
        )
    };
    let (t, _) = start(vec![
        spec("mail", email(&url(SMTP_PASSWORD), Some(&certs), false)),
        // The server's certificate is not signed by a root the system trusts: refused.
        spec("untrusted", email(&url(SMTP_PASSWORD), None, false)),
        // ... unless the operator says to accept any certificate.
        spec("skip", email(&url(SMTP_PASSWORD), None, true)),
        spec(
            "wrong",
            email(&url("not-the-password"), Some(&certs), false),
        ),
    ]);
    t.emit(rolled_back("web"));
    eventually("two mails and two failures", || {
        count(&t, "mail", "delivered") == 1.0
            && count(&t, "skip", "delivered") == 1.0
            && count(&t, "untrusted", "failed") == 1.0
            && count(&t, "wrong", "failed") == 1.0
    })
    .await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m["tls"], true, "STARTTLS before anything else: {m}");
    assert_eq!(m["authenticated"], true, "{m}");
    assert_eq!(m["login"], SMTP_USER, "{m}");
    assert_eq!(m["mail_from"], "lookout@example.org");
    assert_eq!(
        m["rcpt_tos"],
        json!(["ops@example.org", "dev@example.org"]),
        "one mail to every recipient"
    );
    assert_eq!(m["from"], "Lookout Box <lookout@example.org>");
    assert_eq!(m["to"], "ops@example.org, dev@example.org");
    assert_eq!(m["subject"], "Box: web: rolled back");
    assert_eq!(m["content_type"], "multipart/alternative");
    // Mail bodies travel with CRLF line ends.
    let plain = m["plain"].as_str().unwrap().replace("\r\n", "\n");
    let plain = plain.as_str();
    assert!(
        plain.starts_with("web: rolled back\n\nnginx:1.27.1 did not pass; nginx:1.27.0 runs again on test-host: health check failed <exit 1> & more"),
        "{plain}"
    );
    for fact in [
        "Service: web",
        "From: nginx:1.27.0",
        "To: nginx:1.27.1",
        "Reason: health check failed <exit 1> & more",
        "Where: service web in /srv/app/compose.yaml",
    ] {
        assert!(plain.contains(fact), "{fact} in {plain}");
    }
    let html = m["html"].as_str().unwrap();
    assert!(html.contains(">web: rolled back</h2>"), "{html}");
    assert!(
        html.contains("health check failed &lt;exit 1&gt; &amp; more"),
        "escaped: {html}"
    );
    assert!(!html.contains("<exit 1>"), "{html}");
    let id = m["message_id"].as_str().unwrap();
    assert!(id.starts_with('<') && id.ends_with("@lookout>"), "{id}");
    assert_eq!(
        mails[1]["message_id"], m["message_id"],
        "the same event, the same id"
    );
    // A wrong password is a permanent failure: not retried.
    assert_eq!(count(&t, "wrong", "retried"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_implicit_tls_from_a_configuration_file_in_plain_text() {
    let scratch = Scratch::new("notify-smtp-implicit");
    let certs = Certs::new(&scratch);
    let smtp = Smtp::start(
        &scratch,
        &certs,
        SmtpTls::Implicit,
        SMTP_USER,
        SMTP_PASSWORD,
    );
    let text = format!(
        r#"
[[notify]]
name = "ops-mail"
service = "email"
host = "127.0.0.1"
port = {}
encryption = "ImplicitTLS"
username = "{SMTP_USER}"
password = "${{SMTP_PASSWORD}}"
from = "lookout@example.org"
to = ["ops@example.org"]
html = false
tls_ca_file = "{}"
events = ["updated"]
"#,
        smtp.port,
        certs.ca.display()
    );
    let env = |name: &str| (name == "SMTP_PASSWORD").then(|| SMTP_PASSWORD.to_owned());
    let config = lookout::config::from_text(std::path::Path::new("n.toml"), &text, &env).unwrap();
    let (t, deliveries) = Telemetry::new(
        TelemetrySettings::from_config(&config),
        Arc::new(SystemClock),
    );
    tokio::spawn(deliveries.run(std::future::pending()));
    t.emit(rolled_back("web"));
    t.emit(Event::Updated(update("web")));
    eventually("the mail", || count(&t, "ops-mail", "delivered") == 1.0).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "only the updated event: {mails:#?}");
    let m = &mails[0];
    assert_eq!(
        (m["tls"].clone(), m["login"].clone()),
        (json!(true), json!(SMTP_USER))
    );
    assert_eq!(m["subject"], "web: updated");
    assert_eq!(m["content_type"], "text/plain", "html = false");
    assert!(m["html"].is_null());
    assert!(
        m["plain"]
            .as_str()
            .unwrap()
            .contains("nginx:1.27.0 → nginx:1.27.1 on "),
        "{m}"
    );
}

/// `topic<TAB>payload` lines as JSON, for the topics that end with `suffix`.
fn json_on(lines: &[(String, String)], topic: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, p)| serde_json::from_str(p).unwrap_or_else(|e| panic!("{topic}: {e}: {p}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publishes_retained_state_discovery_and_hears_install_commands() {
    let scratch = Scratch::new("notify-mqtt");
    let certs = Certs::new(&scratch);
    let broker = Mosquitto::start(&scratch, &certs, MQTT_USER, MQTT_PASSWORD);
    let events = broker.subscribe("lookout/test-host/+/event", false);
    let plain = format!(
        "mqtt://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{}/?install=yes",
        broker.port
    );
    let Service::Mqtt(mut over_tls) = service(&format!(
        "mqtts://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{}/?topic=lookout-tls&discovery=no",
        broker.tls_port
    )) else {
        panic!()
    };
    over_tls.trust.ca_file = Some(certs.ca.clone());
    let untrusted = service(&format!(
        "mqtts://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{}/?topic=lookout-untrusted",
        broker.tls_port
    ));
    let (t, installs) = start(vec![
        spec("ha", service(&plain)),
        spec("tls", Service::Mqtt(over_tls)),
        // The broker's certificate is not signed by a root the system trusts: never connected.
        spec("untrusted", untrusted),
    ]);
    let mut installs =
        installs.expect("an MQTT channel with install=yes hands out install commands");

    // Discovery: one update entity per service, with the install command.
    let doc = broker.retained_json("homeassistant/update/lookout_test-host/web/config", |_| {
        true
    });
    assert_eq!(doc["name"], "web");
    assert_eq!(doc["unique_id"], "lookout_test-host_web");
    assert_eq!(doc["state_topic"], "lookout/test-host/web/state");
    assert_eq!(doc["command_topic"], "lookout/test-host/web/install");
    assert_eq!(doc["payload_install"], "install");
    assert_eq!(doc["availability_topic"], "lookout/test-host/availability");
    assert_eq!(doc["device"]["identifiers"], json!(["lookout_test-host"]));
    let db = broker.retained_json("homeassistant/update/lookout_test-host/db/config", |_| true);
    assert_eq!(db["state_topic"], "lookout/test-host/db/state");
    let online = broker.retained("lookout/test-host/availability");
    assert_eq!(
        online,
        [(
            "lookout/test-host/availability".to_owned(),
            "online".to_owned()
        )]
    );
    // The TLS channel is connected too (its own base topic, no discovery).
    let tls_online = broker.retained("lookout-tls/availability");
    assert_eq!(tls_online.len(), 1, "{tls_online:?}");
    assert!(broker.retained("homeassistant/update/+/+/config").len() == 2);
    assert!(broker.retained("lookout-untrusted/#").is_empty());

    // An update found, then done: the retained state follows, in Home Assistant's fields.
    t.emit(Event::UpdateAvailable(update("web")));
    let state = broker.retained_json("lookout/test-host/web/state", |v| {
        v["latest_version"] == "1.27.1"
    });
    assert_eq!(state["installed_version"], "1.27.0");
    assert_eq!(state["in_progress"], false);
    assert_eq!(state["candidate"], "nginx:1.27.1");
    t.emit(Event::UpdateStarted(update("web")));
    broker.retained_json("lookout/test-host/web/state", |v| v["in_progress"] == true);
    t.emit(Event::Updated(update("web")));
    let state = broker.retained_json("lookout/test-host/web/state", |v| {
        v["installed_version"] == "1.27.1"
    });
    assert_eq!(state["latest_version"], "1.27.1", "up to date: {state}");
    assert_eq!(state["result"], "updated");
    // A pass's result: db rolled back earlier, a reason to show.
    t.emit(Event::PassStarted);
    t.emit(Event::PassFinished {
        services: vec![PassService {
            service: "db".into(),
            installed: Some("postgres:16.1".into()),
            candidate: Some("postgres:16.2".into()),
            result: "update_available".into(),
            reason: Some("outside the maintenance window".into()),
        }],
    });
    let db = broker.retained_json("lookout/test-host/db/state", |v| {
        v["result"] == "update_available"
    });
    assert_eq!(
        (
            db["installed_version"].as_str(),
            db["latest_version"].as_str()
        ),
        (Some("16.1"), Some("16.2"))
    );
    assert_eq!(
        db["release_summary"],
        "update_available: outside the maintenance window"
    );
    let tls_state = broker.retained_json("lookout-tls/web/state", |v| v["result"] == "updated");
    assert_eq!(tls_state["installed_version"], "1.27.1");

    // Each notification's JSON on the event topic, not retained.
    eventually("three events", || {
        json_on(&events.lines(), "lookout/test-host/web/event").len() == 3
    })
    .await;
    let seen = json_on(&events.lines(), "lookout/test-host/web/event");
    assert_eq!(seen[2]["type"], "updated", "{seen:?}");
    assert!(broker.retained("lookout/test-host/+/event").is_empty());

    // The install command round trip: `install` on web's command topic reaches the daemon's
    // queue; anything else, or an unknown service, does not.
    broker.publish("lookout/test-host/web/install", "something else");
    broker.publish("lookout/test-host/nosuch/install", "install");
    broker.publish("lookout/test-host/db/install", "install");
    let got = tokio::time::timeout(Duration::from_secs(10), installs.recv())
        .await
        .expect("an install request within 10 s")
        .unwrap();
    assert_eq!(
        got,
        InstallRequest {
            service: "db".into(),
            channel: "ha".into()
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(installs.try_recv().is_err(), "only the one install command");
    assert!(count(&t, "ha", "delivered") >= 3.0);
}

/// The daemon on the fake host, with an MQTT channel that takes install commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_command_runs_a_pass_that_honours_pause() {
    let scratch = Scratch::new("notify-mqtt-install");
    let certs = Certs::new(&scratch);
    let broker = Mosquitto::start(&scratch, &certs, MQTT_USER, MQTT_PASSWORD);
    let token = "test-token-0123456789abcdef0123456789abcdef";
    let host = FakeHost::new(
        "notify-mqtt-install",
        &format!(
            "api_token = \"{token}\"\n\n[[notify]]\nname = \"ha\"\nurl = \"mqtt://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{}/?topic=box\"\ninstall = true\n",
            broker.port
        ),
    );
    host.publish("1.1.0", Some(Health::Healthy));
    let (engine, deliveries) = host.engine();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let mut parts = Parts::new(
        &host.config(),
        engine,
        deliveries,
        listener,
        Arc::new(SystemClock),
        Reload {
            requests: reload_rx,
            load: Box::new(|| anyhow::bail!("no reloads here")),
        },
    );
    parts.schedule = Schedule::interval(Duration::from_secs(3600), Duration::ZERO);
    parts.first_check_at_start = false;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(daemon::serve(parts, async {
        let _ = stopped.await;
    }));
    let client = lookout::tls::client();
    let paused = client
        .post(format!("{base}/api/v1/pause"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(paused.status().is_success(), "{}", paused.status());
    broker.retained_json("homeassistant/update/+/web/config", |d| {
        d["command_topic"] == "box/web/install"
    });

    // Paused: the install command checks web and holds the update, saying why.
    broker.publish("box/web/install", "install");
    let state = broker.retained_json("box/web/state", |v| v["result"] == "update_available");
    assert_eq!(state["installed_version"], "1.0.0", "{state}");
    assert_eq!(state["latest_version"], "1.1.0", "{state}");
    assert!(
        state["reason"].as_str().unwrap_or("").contains("paused"),
        "{state}"
    );
    assert_eq!(
        host.runtime.running("app", "web").unwrap().1,
        "registry.test:5000/team/web:1.0.0"
    );

    // Resumed: the same command updates it.
    let resumed = client
        .post(format!("{base}/api/v1/resume"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resumed.status().is_success());
    broker.publish("box/web/install", "install");
    let state = broker.retained_json("box/web/state", |v| v["result"] == "updated");
    assert_eq!(state["installed_version"], "1.1.0", "{state}");
    assert_eq!(state["latest_version"], "1.1.0", "{state}");
    assert_eq!(
        host.runtime.running("app", "web").unwrap().1,
        "registry.test:5000/team/web:1.1.0"
    );
    let history: Value = client
        .get(format!("{base}/api/v1/history"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["history"][0]["actor"], "mqtt", "{history}");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    // At the end, the broker says lookout is gone.
    let gone = broker.retained("box/availability");
    assert_eq!(
        gone,
        [("box/availability".to_owned(), "offline".to_owned())]
    );
}

#[tokio::test]
async fn matrix_logs_in_with_its_password_then_sends_with_the_token() {
    let puts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = FakeHttp::start(move |r| match (r.method.as_str(), r.path_only()) {
        ("POST", "/_matrix/client/v3/login") => {
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            let documented = b["type"] == "m.login.password"
                && b["identifier"] == json!({"type": "m.id.user", "user": "bob"})
                && b["password"] == "matrix-pass-4Rt9"
                && b["device_id"] == "LOOKOUTDEV"
                && r.header("content-type") == Some("application/json")
                && r.header("authorization").is_none();
            if documented {
                Response::json(
                    200,
                    &json!({"user_id": "@bob:example.org", "access_token": "syt_from_login_77", "device_id": "LOOKOUTDEV"}),
                )
            } else {
                Response::json(
                    403,
                    &json!({"errcode": "M_FORBIDDEN", "error": "Invalid password"}),
                )
            }
        }
        ("PUT", p) if p.starts_with("/_matrix/client/v3/rooms/") => {
            // The token is revoked once, at the second send.
            if puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                Response::json(401, &json!({"errcode": "M_UNKNOWN_TOKEN"}))
            } else if r.header("authorization") == Some("Bearer syt_from_login_77") {
                Response::json(200, &json!({"event_id": "$e"}))
            } else {
                Response::json(401, &json!({"errcode": "M_UNKNOWN_TOKEN"}))
            }
        }
        _ => Response::status(404),
    });
    let url = format!(
        "matrix://bob:matrix-pass-4Rt9@{}/?rooms=!room:example.org&disableTLS=yes&deviceId=LOOKOUTDEV",
        server.addr
    );
    let (t, _) = start(vec![spec("matrix", service(&url))]);
    t.emit(rolled_back("web"));
    t.emit(Event::Updated(update("web")));
    t.emit(Event::UpdateAvailable(update("web")));
    eventually("two messages sent, one refused", || {
        count(&t, "matrix", "delivered") == 2.0 && count(&t, "matrix", "failed") == 1.0
    })
    .await;
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path_only()))
        .collect();
    let login = "POST /_matrix/client/v3/login";
    // Log in and send; the second send's token is refused (that message fails); the third
    // message logs in again and goes out.
    let kinds: Vec<&str> = paths
        .iter()
        .map(|p| if p == login { "login" } else { "send" })
        .collect();
    assert_eq!(
        kinds,
        ["login", "send", "send", "login", "send"],
        "{paths:?}"
    );

    // A wrong password fails the delivery, counted, and says nothing of the password.
    let bad = format!(
        "matrix://bob:wrong-pass-1234@{}/?rooms=!room:example.org&disableTLS=yes",
        server.addr
    );
    let (t, _) = start(vec![spec("bad", service(&bad))]);
    t.emit(rolled_back("web"));
    eventually("the failure", || count(&t, "bad", "failed") == 1.0).await;
}

#[tokio::test]
async fn a_summary_channel_sends_one_message_per_pass() {
    let server = FakeHttp::start(|_| Response::json(200, &json!({})));
    let mut s = spec(
        "digest",
        service(&format!("generic+http://{}/in", server.addr)),
    );
    s.mode = NotifyMode::Summary {
        wait: Duration::from_millis(200),
    };
    let (t, _) = start(vec![s]);
    t.emit(Event::PassStarted);
    t.emit(Event::UpdateAvailable(update("db")));
    t.emit(Event::UpdateStarted(update("web")));
    t.emit(Event::Updated(update("web")));
    // A long pass: nothing is sent while it runs, however long it takes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.requests().is_empty(), "held until the pass ends");
    t.emit(rolled_back("db"));
    t.emit(Event::UpdateFailed {
        update: update("web"),
        stage: lookout::telemetry::Stage::Pull,
        reason: "pull failed".into(),
    });
    t.emit(Event::PassFinished {
        services: Vec::new(),
    });
    eventually("the summary", || server.requests().len() == 1).await;
    let b: Value = serde_json::from_slice(&server.requests()[0].body).unwrap();
    let events = b["event"]["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "update_available",
            "updated",
            "rolled_back",
            "update_failed"
        ],
        "what was found, updated, rolled back and failed; not that an update started"
    );
    assert_eq!(
        b["title"],
        "lookout on test-host: 1 update available, 1 updated, 1 rolled back, 1 update failed"
    );
    // A pass with nothing to say sends nothing.
    t.emit(Event::PassStarted);
    t.emit(Event::PassFinished {
        services: Vec::new(),
    });
    // What happens outside a pass (a rollback through the API) goes out after summary_wait.
    t.emit(rolled_back("web"));
    eventually("the second summary", || server.requests().len() == 2).await;
    let b: Value = serde_json::from_slice(&server.requests()[1].body).unwrap();
    assert_eq!(b["event"]["events"].as_array().unwrap().len(), 1, "{b}");
}

/// End to end on the real engine: `lookout update` updates a compose service, then rolls back
/// a candidate whose health check fails; each produces the right messages on three channels at
/// once: email (aiosmtpd), MQTT (mosquitto) and ntfy (a loopback server that checks ntfy's
/// JSON publish format). No password appears in what lookout prints.
#[test]
fn an_update_and_a_rollback_reach_email_mqtt_and_ntfy_at_once() {
    use crate::engine::{COMPOSE_TAGGED, Flavor, HEALTHY, Project, UNHEALTHY};
    let ntfy = FakeHttp::start(|r| {
        Response::json(if ntfy_publish(r) { 200 } else { 400 }, &json!({"id": "x"}))
    });
    let mut p = Project::new(
        "notify-e2e",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let certs = Certs::new(&p.scratch);
    let smtp = Smtp::start(
        &p.scratch,
        &certs,
        SmtpTls::StartTls,
        SMTP_USER,
        SMTP_PASSWORD,
    );
    let broker = Mosquitto::start(&p.scratch, &certs, MQTT_USER, MQTT_PASSWORD);
    let events = broker.subscribe("e2e/app/event", false);
    let channels = format!(
        r#"
[[notify]]
name = "mail"
url = "smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}/?from=lookout@example.org&to=ops@example.org,dev@example.org"
tls_ca_file = "{}"
events = ["updated", "rolled_back", "update_failed"]

[[notify]]
name = "ha"
url = "mqtt://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{}/?topic=e2e"

[[notify]]
name = "phone"
url = "ntfy://:tk_e2e_token_123456@{}/deploys?scheme=http"
"#,
        smtp.port,
        certs.ca.display(),
        broker.port,
        ntfy.addr
    );
    let mut config = std::fs::read_to_string(&p.config).unwrap();
    config.push_str(&channels);
    std::fs::write(&p.config, config).unwrap();
    p.push("1.0.0", HEALTHY);
    p.up();

    p.push("1.1.0", HEALTHY);
    let (code, stdout, stderr) = p.lookout(&["update", "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for secret in [SMTP_PASSWORD, MQTT_PASSWORD, "tk_e2e_token_123456"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed:\n{stderr}"
        );
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one mail for the update: {mails:#?}");
    assert_eq!(mails[0]["subject"], "app: updated");
    assert_eq!(
        mails[0]["rcpt_tos"],
        json!(["ops@example.org", "dev@example.org"])
    );
    let plain = mails[0]["plain"].as_str().unwrap();
    assert!(
        plain.contains(&format!("{}:1.0.0 → {}:1.1.0", p.repo, p.repo)),
        "{plain}"
    );
    assert!(
        mails[0]["html"]
            .as_str()
            .unwrap()
            .contains("app: updated</h2>")
    );
    let titles = |server: &FakeHttp| -> Vec<String> {
        server
            .requests()
            .iter()
            .map(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["title"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        titles(&ntfy),
        ["app: update available", "app: updating", "app: updated"]
    );
    let state = broker.retained_json("e2e/app/state", |v| v["result"] == "updated");
    assert_eq!(
        (
            state["installed_version"].as_str(),
            state["latest_version"].as_str()
        ),
        (Some("1.1.0"), Some("1.1.0")),
        "{state}"
    );

    p.push("2.0.0", UNHEALTHY);
    let (code, stdout, stderr) = p.lookout(&["update", "--json"]);
    assert_eq!(code, 3, "rolled back: {stdout}\n{stderr}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert_eq!(mails[1]["subject"], "app: rolled back");
    let plain = mails[1]["plain"].as_str().unwrap();
    assert!(
        plain.contains(&format!(
            "{}:2.0.0 did not pass; {}:1.1.0 runs again",
            p.repo, p.repo
        )),
        "{plain}"
    );
    assert!(plain.contains("Reason: "), "{plain}");
    assert_eq!(
        titles(&ntfy)[3..],
        ["app: update available", "app: updating", "app: rolled back"]
    );
    let state = broker.retained_json("e2e/app/state", |v| v["result"] == "rolled_back");
    assert_eq!(
        (
            state["installed_version"].as_str(),
            state["latest_version"].as_str()
        ),
        (Some("1.1.0"), Some("2.0.0")),
        "the failed candidate is still the latest: {state}"
    );
    assert!(
        !state["reason"].as_str().unwrap_or("").is_empty(),
        "{state}"
    );
    let seen: Vec<String> = events
        .lines()
        .iter()
        .map(|(_, p)| {
            serde_json::from_str::<Value>(p).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        seen,
        [
            "update_available",
            "update_started",
            "updated",
            "update_available",
            "update_started",
            "rolled_back"
        ]
    );
    // Every request the ntfy server got had ntfy's documented format.
    assert!(ntfy.requests().iter().all(ntfy_publish));
}

/// ntfy's JSON publish (`POST /` with `topic`, `title`, `message`), with the token.
fn ntfy_publish(r: &crate::util::fake_http::Request) -> bool {
    let b: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    r.method == "POST"
        && r.path_only() == "/"
        && r.header("content-type") == Some("application/json")
        && r.header("authorization") == Some("Bearer tk_e2e_token_123456")
        && b["topic"] == "deploys"
        && b["title"].is_string()
        && b["message"].is_string()
}
