//! Notification channels over loopback HTTP servers that check each service's documented
//! request: path, method, headers, JSON fields and escaping; a channel that hangs or fails
//! never delaying another; every request counted by channel and result; summaries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::schedule::SystemClock;
use lookout::telemetry::channels::shoutrrr::parse;
use lookout::telemetry::channels::slack::{Flavor, SlackHook};
use lookout::telemetry::channels::{discord, teams};
use lookout::telemetry::{
    Event, EventKind, NotifyMode, NotifySpec, Retry, Service, Stage, Telemetry, TelemetrySettings,
    UpdateInfo,
};
use serde_json::Value;

use crate::util::fake_http::{FakeHttp, Request, Response};
use crate::util::{eventually, metric};

fn update() -> UpdateInfo {
    UpdateInfo {
        service: "web".into(),
        compose_service: "web".into(),
        compose_file: PathBuf::from("/srv/web/compose.yaml"),
        old_image: "nginx:1.27.0".into(),
        new_image: "nginx:1.27.1".into(),
        old_digest: Some("sha256:old".into()),
        new_digest: Some("sha256:new".into()),
        started_at: "2025-01-06T02:00:00Z".parse().unwrap(),
        duration: Some(Duration::from_secs(30)),
    }
}

fn rolled_back() -> Event {
    Event::RolledBack {
        update: update(),
        reason: "health check failed (exit 1) *see* [logs]_".into(),
    }
}

fn service(url: &str) -> Service {
    parse(url).unwrap_or_else(|e| panic!("{url}: {e}")).service
}

fn spec(name: &str, service: Service, mode: NotifyMode) -> NotifySpec {
    NotifySpec {
        name: name.into(),
        service,
        events: None,
        mode,
        timeout: Duration::from_secs(2),
        templates: Default::default(),
    }
}

fn start(channels: Vec<NotifySpec>) -> Telemetry {
    let settings = TelemetrySettings {
        version: "0.0.0-test".into(),
        host: "test-host".into(),
        services: vec!["web".into()],
        registries: Vec::new(),
        webhooks: Vec::new(),
        notify: channels,
        queue_capacity: 8,
        retry: Retry {
            attempts: 3,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    };
    let (t, deliveries) = Telemetry::new(settings, Arc::new(SystemClock));
    tokio::spawn(deliveries.run(std::future::pending()));
    t
}

fn ok() -> FakeHttp {
    FakeHttp::start(|_| Response::json(200, &serde_json::json!({"ok": true})))
}

fn json(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

/// One event to one channel, delivered in `n` requests; the requests the server got.
async fn deliver_one(service: Service, server: &FakeHttp, n: usize) -> Vec<Request> {
    let t = start(vec![spec("c", service, NotifyMode::Event)]);
    t.emit(rolled_back());
    eventually("the requests", || server.requests().len() >= n).await;
    eventually("the count", || {
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="c",result="delivered"}"#,
        ) == n as f64
    })
    .await;
    server.requests()
}

#[tokio::test]
async fn ntfy_publishes_json_with_the_token_priority_and_tags() {
    let server = ok();
    let url = format!(
        "ntfy://:tk_abcdef123456@{}/alerts?scheme=http&click=https://status.example.org",
        server.addr
    );
    let r = &deliver_one(service(&url), &server, 1).await[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
    assert_eq!(r.header("authorization"), Some("Bearer tk_abcdef123456"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = json(r);
    assert_eq!(b["topic"], "alerts");
    assert_eq!(b["title"], "web: rolled back");
    assert_eq!(b["priority"], 4);
    assert_eq!(b["tags"], serde_json::json!(["rewind", "warning"]));
    assert_eq!(b["click"], "https://status.example.org");
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains("nginx:1.27.1")
            && message.contains("nginx:1.27.0")
            && message.contains("health check failed"),
        "{message}"
    );

    let server = ok();
    let url = format!(
        "ntfy://bob:pa55word@{}/sub/alerts?scheme=http&priority=min&tags=a,b",
        server.addr
    );
    let r = &deliver_one(service(&url), &server, 1).await[0];
    assert_eq!(r.path, "/sub/");
    assert_eq!(r.header("authorization"), Some("Basic Ym9iOnBhNTV3b3Jk"));
    assert_eq!(
        (json(r)["priority"].as_u64(), json(r)["tags"].clone()),
        (Some(1), serde_json::json!(["a", "b"]))
    );
}

#[tokio::test]
async fn gotify_posts_message_with_the_app_token_header() {
    let server = ok();
    let url = format!(
        "gotify://{}/gotify/AzyoeNS.D4iJLVa/?disabletls=yes&priority=9",
        server.addr
    );
    let r = &deliver_one(service(&url), &server, 1).await[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/gotify/message")
    );
    assert_eq!(r.header("x-gotify-key"), Some("AzyoeNS.D4iJLVa"));
    let b = json(r);
    assert_eq!(
        (b["title"].as_str(), b["priority"].as_u64()),
        (Some("web: rolled back"), Some(9))
    );
    assert_eq!(b["extras"]["client::display"]["contentType"], "text/plain");
}

#[tokio::test]
async fn telegram_sends_escaped_markdown_v2_to_each_chat() {
    let server = ok();
    let Service::Telegram(mut tg) = service(
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@ops,-1001234567890:42&notification=no",
    ) else {
        panic!()
    };
    tg.api = server.url("");
    let got = deliver_one(Service::Telegram(tg), &server, 2).await;
    let mut chats = Vec::new();
    for r in &got {
        assert_eq!(
            r.path,
            "/bot110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage"
        );
        let b = json(r);
        assert_eq!(b["parse_mode"], "MarkdownV2");
        assert_eq!(b["disable_notification"], true);
        let text = b["text"].as_str().unwrap();
        assert!(text.starts_with("*web: rolled back*\n"), "{text}");
        assert!(text.contains(r"nginx:1\.27\.1 did not pass"), "{text}");
        assert!(
            text.contains(r"health check failed \(exit 1\) \*see\* \[logs\]\_"),
            "{text}"
        );
        chats.push((
            b["chat_id"].as_str().unwrap().to_owned(),
            b["message_thread_id"].as_i64(),
        ));
    }
    chats.sort();
    assert_eq!(
        chats,
        [
            ("-1001234567890".to_owned(), Some(42)),
            ("@ops".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn teams_posts_an_adaptive_card() {
    let server = ok();
    let hook = teams::Teams {
        webhook_url: server
            .url("/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=s1g"),
        title: None,
        color: None,
    };
    let r = &deliver_one(Service::Teams(hook), &server, 1).await[0];
    assert_eq!(
        r.path,
        "/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=s1g"
    );
    let b = json(r);
    assert_eq!(b["type"], "message");
    let a = &b["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &a["content"];
    assert_eq!(
        (card["type"].as_str(), card["version"].as_str()),
        (Some("AdaptiveCard"), Some("1.4"))
    );
    assert_eq!(card["body"][0]["text"], "web: rolled back");
    assert_eq!(card["body"][0]["color"], "warning");
    let facts: Vec<&str> = card["body"][2]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert_eq!(facts, ["Service", "Host", "From", "To", "Reason", "Where"]);
}

#[tokio::test]
async fn matrix_puts_one_event_per_room_with_a_stable_transaction_id() {
    // The first answer is a 502, so the send is retried: with the same transaction id.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let server = FakeHttp::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Response::status(502)
        } else {
            Response::json(200, &serde_json::json!({"event_id": "$e"}))
        }
    });
    let url = format!(
        "matrix://:syt_access_token@{}/?rooms=!room1:example.org,!room2:example.org&disableTLS=yes",
        server.addr
    );
    // Two deliveries (one per room), three requests.
    let got = deliver_one(service(&url), &server, 2).await;
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.method, "PUT");
        assert_eq!(r.header("authorization"), Some("Bearer syt_access_token"));
        let b = json(r);
        assert_eq!(
            (b["msgtype"].as_str(), b["format"].as_str()),
            (Some("m.text"), Some("org.matrix.custom.html"))
        );
        assert!(
            b["formatted_body"]
                .as_str()
                .unwrap()
                .starts_with("<strong>web: rolled back</strong><br>")
        );
    }
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths[0], paths[1], "a retry keeps the transaction id");
    assert!(
        paths[0].starts_with(
            "/_matrix/client/v3/rooms/%21room1%3Aexample%2Eorg/send/m.room.message/lookout-"
        ),
        "{}",
        paths[0]
    );
    assert!(
        paths[2].contains("%21room2") && paths[2].ends_with("-1"),
        "{}",
        paths[2]
    );
}

#[tokio::test]
async fn pushover_posts_messages_json() {
    let server = ok();
    let Service::Pushover(mut p) = service(
        "pushover://shoutrrr:azGDORePK8gMaC0QOYAMyEEuzJnyUi@uQiRzpo4DXghDmr9QzzfQu27cmVRsG/?devices=phone,tablet&title=Box",
    ) else {
        panic!()
    };
    p.api = server.url("");
    let r = &deliver_one(Service::Pushover(p), &server, 1).await[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/1/messages.json")
    );
    let b = json(r);
    assert_eq!(b["token"], "azGDORePK8gMaC0QOYAMyEEuzJnyUi");
    assert_eq!(b["user"], "uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
    assert_eq!(b["device"], "phone,tablet");
    assert_eq!(
        (b["title"].as_str(), b["priority"].as_i64()),
        (Some("Box: web: rolled back"), Some(1))
    );
}

#[tokio::test]
async fn slack_compatible_hooks_get_text_and_attachments() {
    for (flavor, url) in [
        (
            Flavor::Mattermost,
            "mattermost://lookout@{}/bywsw8zt5jgpte3nm65qjiru6h/ops?disabletls=yes",
        ),
        (
            Flavor::RocketChat,
            "rocketchat://lookout@{}/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX/ops?disabletls=yes",
        ),
        (Flavor::Slack, ""),
    ] {
        let server = ok();
        let hook = match flavor {
            Flavor::Slack => {
                let mut h = SlackHook::new(Flavor::Slack, server.url("/services/T0/B0/XXXX"));
                h.channel = Some("#ops".into());
                Service::Slack(h)
            }
            _ => service(&url.replace("{}", &server.addr)),
        };
        let r = &deliver_one(hook, &server, 1).await[0];
        let want_path = match flavor {
            Flavor::Mattermost => "/hooks/bywsw8zt5jgpte3nm65qjiru6h",
            Flavor::RocketChat => {
                "/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX"
            }
            Flavor::Slack => "/services/T0/B0/XXXX",
        };
        assert_eq!(r.path, want_path, "{flavor:?}");
        let b = json(r);
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .starts_with("*web: rolled back*\n"),
            "{flavor:?}: {b}"
        );
        assert_eq!(b["attachments"][0]["color"], "#f39c12", "{flavor:?}");
        let channel = if flavor == Flavor::Slack || flavor == Flavor::RocketChat {
            "#ops"
        } else {
            "ops"
        };
        assert_eq!(b["channel"], channel, "{flavor:?}");
        if flavor != Flavor::Slack {
            assert_eq!(b["username"], "lookout", "{flavor:?}");
        }
    }
}

#[tokio::test]
async fn slack_text_escapes_its_control_characters() {
    let server = ok();
    let t = start(vec![spec(
        "s",
        Service::Slack(SlackHook::new(Flavor::Slack, server.url("/h"))),
        NotifyMode::Event,
    )]);
    t.emit(Event::UpdateFailed {
        update: update(),
        stage: Stage::Up,
        reason: "compose said <!channel> & left".into(),
    });
    eventually("the request", || server.requests().len() == 1).await;
    let text = json(&server.requests()[0])["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("compose said &lt;!channel&gt; &amp; left"),
        "{text}"
    );
}

#[tokio::test]
async fn discord_and_generic_endpoints() {
    let server = ok();
    let d = discord::Discord {
        webhook_url: server.url("/api/webhooks/1/tok"),
        username: Some("lookout".into()),
        avatar_url: None,
        color: None,
        title: None,
    };
    let r = &deliver_one(Service::Discord(d), &server, 1).await[0];
    let b = json(r);
    assert_eq!(b["username"], "lookout");
    assert_eq!(b["embeds"][0]["title"], "web: rolled back");
    assert_eq!(b["embeds"][0]["color"], 0xf39c12);
    assert_eq!(b["allowed_mentions"]["parse"], serde_json::json!([]));

    let server = ok();
    let url = format!(
        "generic+http://{}/hook?source=box&@X-Api-Key=k3y&$env=prod&messagekey=text",
        server.addr
    );
    let r = &deliver_one(service(&url), &server, 1).await[0];
    assert_eq!(r.path, "/hook?source=box");
    assert_eq!(r.header("x-api-key"), Some("k3y"));
    let b = json(r);
    assert_eq!(
        (b["title"].as_str(), b["env"].as_str()),
        (Some("web: rolled back"), Some("prod"))
    );
    assert!(b["text"].as_str().unwrap().contains("did not pass"));
    assert_eq!(b["event"]["type"], "rolled_back");
    assert_eq!(b["event"]["event"], "rollback");
}

#[tokio::test]
async fn a_hanging_or_failing_channel_never_delays_another() {
    let hang = FakeHttp::start_raw(|_, _| {
        std::thread::sleep(Duration::from_secs(30));
        Ok(())
    });
    let failing = FakeHttp::start(|_| Response::status(500));
    let good = ok();
    let t = start(vec![
        spec(
            "hang",
            service(&format!("ntfy://{}/t?scheme=http", hang.addr)),
            NotifyMode::Event,
        ),
        spec(
            "bad",
            service(&format!("ntfy://{}/t?scheme=http", failing.addr)),
            NotifyMode::Event,
        ),
        spec(
            "good",
            service(&format!("ntfy://{}/t?scheme=http", good.addr)),
            NotifyMode::Event,
        ),
    ]);
    let began = Instant::now();
    for _ in 0..3 {
        t.emit(rolled_back());
    }
    assert!(
        began.elapsed() < Duration::from_millis(200),
        "emit never waits"
    );
    eventually("the good channel", || good.requests().len() == 3).await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "took {:?}",
        began.elapsed()
    );
    eventually("the failing channel's three failures", || {
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="bad",result="failed"}"#,
        ) == 3.0
    })
    .await;
    assert_eq!(failing.requests().len(), 9, "three attempts each");
    assert_eq!(
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="bad",result="retried"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="good",result="delivered"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="hang",result="delivered"}"#
        ),
        0.0
    );
    // The hanging channel's queue (8) fills; then its messages are dropped and counted.
    for _ in 0..12 {
        t.emit(rolled_back());
    }
    assert!(
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="hang",result="dropped"}"#
        ) >= 1.0
    );
}

#[tokio::test]
async fn events_are_filtered_per_channel_and_summaries_hold_a_burst() {
    let every = ok();
    let summary = ok();
    let mut only_failures = spec(
        "fails",
        service(&format!("ntfy://{}/t?scheme=http", every.addr)),
        NotifyMode::Event,
    );
    only_failures.events = Some(vec![EventKind::UpdateFailed]);
    let t = start(vec![
        only_failures,
        spec(
            "digest",
            service(&format!("ntfy://{}/d?scheme=http", summary.addr)),
            NotifyMode::Summary {
                wait: Duration::from_millis(300),
            },
        ),
    ]);
    t.emit(Event::Updated(update()));
    t.emit(rolled_back());
    t.emit(Event::UpdateFailed {
        update: update(),
        stage: Stage::Pull,
        reason: "pull failed".into(),
    });
    eventually("the summary", || summary.requests().len() == 1).await;
    eventually("the failure", || every.requests().len() == 1).await;
    assert_eq!(json(&every.requests()[0])["title"], "web: update failed");
    let b = json(&summary.requests()[0]);
    assert_eq!(
        b["title"],
        "lookout on test-host: 1 updated, 1 rolled back, 1 update failed"
    );
    assert_eq!(b["priority"], 5, "the worst event's priority");
    assert_eq!(
        b["message"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("web: "))
            .count(),
        3
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(summary.requests().len(), 1, "one summary for the burst");
}

#[tokio::test]
async fn templates_shape_what_each_channel_sends() {
    let server = ok();
    let mut c = spec(
        "tpl",
        service(&format!("ntfy://{}/t?scheme=http", server.addr)),
        NotifyMode::Event,
    );
    c.templates.title = Some("[{{ host }}] {{ service }} {{ type }}".into());
    c.templates.body =
        Some("{{ old_image }} -> {{ new_image }}{% if reason %}: {{ reason }}{% endif %}".into());
    let t = start(vec![c]);
    t.emit(rolled_back());
    eventually("the request", || server.requests().len() == 1).await;
    let b = json(&server.requests()[0]);
    assert_eq!(b["title"], "[test-host] web rolled_back");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("nginx:1.27.0 -> nginx:1.27.1: health check failed"),
        "{b}"
    );
}

#[tokio::test]
async fn a_configuration_file_brings_its_channels_to_telemetry() {
    let ntfy = ok();
    let generic = ok();
    let text = format!(
        r#"
[[notify]]
url = "ntfy://:${{NTFY_TOKEN}}@{}/updates?scheme=http"
events = ["rolled_back"]

[[notify]]
name = "hook"
url = "generic+http://{}/in"
mode = "summary"
summary_wait = "1s"
"#,
        ntfy.addr, generic.addr
    );
    let env = |name: &str| (name == "NTFY_TOKEN").then(|| "tk_fromEnv123456".to_owned());
    let config = lookout::config::from_text(std::path::Path::new("n.toml"), &text, &env).unwrap();
    let names: Vec<&str> = config.notify.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["ntfy", "hook"]);
    let (t, deliveries) = Telemetry::new(
        TelemetrySettings::from_config(&config),
        Arc::new(SystemClock),
    );
    tokio::spawn(deliveries.run(std::future::pending()));
    t.emit(Event::Updated(update()));
    t.emit(rolled_back());
    eventually("ntfy", || ntfy.requests().len() == 1).await;
    eventually("the summary", || generic.requests().len() == 1).await;
    assert_eq!(
        ntfy.requests()[0].header("authorization"),
        Some("Bearer tk_fromEnv123456")
    );
    assert_eq!(json(&ntfy.requests()[0])["title"], "web: rolled back");
    let b = json(&generic.requests()[0]);
    assert_eq!(b["event"]["type"], "summary");
    assert_eq!(b["event"]["events"].as_array().unwrap().len(), 2);
    eventually("the counts", || {
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="hook",result="delivered"}"#,
        ) == 1.0
            && metric(
                &t,
                r#"lookout_notify_deliveries_total{channel="ntfy",result="delivered"}"#,
            ) == 1.0
    })
    .await;
}

#[tokio::test]
async fn matrix_room_aliases_are_looked_up_once() {
    let server = FakeHttp::start(|r| {
        if r.method == "GET" && r.path == "/_matrix/client/v3/directory/room/%23ops%3Aexample%2Eorg"
        {
            Response::json(
                200,
                &serde_json::json!({"room_id": "!resolved:example.org", "servers": ["example.org"]}),
            )
        } else if r.method == "GET" {
            Response::json(404, &serde_json::json!({"errcode": "M_NOT_FOUND"}))
        } else {
            Response::json(200, &serde_json::json!({"event_id": "$e"}))
        }
    });
    let url = format!(
        "matrix://:syt_access_token@{}/?rooms=%23ops:example.org,gone:example.org&disableTLS=yes",
        server.addr
    );
    let t = start(vec![spec("m", service(&url), NotifyMode::Event)]);
    t.emit(rolled_back());
    t.emit(Event::Updated(update()));
    eventually("two sends", || {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "PUT")
            .count()
            == 2
    })
    .await;
    eventually("the counts", || {
        metric(
            &t,
            r#"lookout_notify_deliveries_total{channel="m",result="delivered"}"#,
        ) == 2.0
            && metric(
                &t,
                r#"lookout_notify_deliveries_total{channel="m",result="failed"}"#,
            ) == 2.0
    })
    .await;
    let got = server.requests();
    let lookups: Vec<&str> = got
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        lookups,
        [
            "/_matrix/client/v3/directory/room/%23ops%3Aexample%2Eorg",
            "/_matrix/client/v3/directory/room/%23gone%3Aexample%2Eorg",
            "/_matrix/client/v3/directory/room/%23gone%3Aexample%2Eorg",
        ],
        "a resolved alias is kept; one that failed is asked again"
    );
    for r in got.iter().filter(|r| r.method == "PUT") {
        assert!(
            r.path.starts_with(
                "/_matrix/client/v3/rooms/%21resolved%3Aexample%2Eorg/send/m.room.message/lookout-"
            ),
            "{}",
            r.path
        );
        assert_eq!(r.header("authorization"), Some("Bearer syt_access_token"));
    }
}
