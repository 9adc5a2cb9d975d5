//! The web page in a real browser (headless Chromium through chromedriver), and the API against
//! its OpenAPI document with schemathesis.
//!
//! - `the_page_shows_real_services_and_follows_an_update_live`: `lookout run` as a process on
//!   the Docker engine and the loopback registry, three real services (up to date, updatable,
//!   rolled back); login, refusals, an update pressed on the page and followed live,
//!   screenshots.
//! - `two_hundred_services_make_a_small_page_that_renders_fast`: the daemon in process on the
//!   fakes, 200 services; the HTML's size and the browser's first contentful paint.
//! - `schemathesis_finds_every_answer_as_the_openapi_document_says`: the running daemon (on the
//!   fakes) against `/api/v1/openapi.json`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::daemon::{self, Parts, Reload};
use lookout::runtime::Health;
use lookout::schedule::SystemClock;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{HEALTHY, UNHEALTHY};
use crate::util::browser::Browser;
use crate::util::daemon::{Daemon, http};
use crate::util::docker::remove_labelled;
use crate::util::fakes::{FakeCompose, FakeHost, FakeRegistry, FakeRuntime, WEB, digest};
use crate::util::{
    LocalRegistry, RegistryAuth, Scratch, TestImage, free_port, lookout, run, wait_for,
};

const TOKEN: &str = "web-token-0123456789abcdef0123456789";

/// One image of a test service, with the source annotations the page links to.
fn build(scratch: &Scratch, repo: &str, tag: &str, health: &str) -> TestImage {
    let name = repo.rsplit('/').next().unwrap();
    let revision = format!("{:0>7}", tag.replace('.', ""));
    let labels = format!(
        "LABEL org.opencontainers.image.source=https://github.com/example/{name} org.opencontainers.image.revision={revision} org.opencontainers.image.version={tag}\n{health}"
    );
    let reference = format!("{repo}:{tag}");
    let image = TestImage::build(scratch, &reference, tag, &labels);
    image.push(&reference);
    image
}

/// The compose project and its cleanup: `compose down`, then everything labelled.
struct Project {
    dir: std::path::PathBuf,
    scratch_id: String,
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .current_dir(&self.dir)
            .args(["compose", "-f", "compose.yaml", "down", "--timeout", "1"])
            .output();
        remove_labelled(&self.scratch_id);
    }
}

/// `GET /api/v1/services/NAME` with the token.
fn service(addr: &str, name: &str) -> Value {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/api/v1/services/{name}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The `name=status` of each row of the table.
async fn rows(b: &Browser) -> Vec<String> {
    let v = b
        .js("return [...document.querySelectorAll('#services tbody tr')].map(r => r.dataset.name + '=' + r.dataset.status)")
        .await;
    let mut rows: Vec<String> = serde_json::from_value(v).unwrap();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_real_services_and_follows_an_update_live() {
    let scratch = Scratch::new("web-browser");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let repo = |name: &str| registry.image(&format!("web/{name}"));
    let mut images = vec![
        build(&scratch, &repo("fresh"), "1.0.0", HEALTHY),
        build(&scratch, &repo("behind"), "1.0.0", HEALTHY),
        build(&scratch, &repo("broken"), "1.0.0", HEALTHY),
    ];
    let name: String = format!("lk{}", scratch.id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let dir = scratch.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut compose = String::from("services:\n");
    for s in ["fresh", "behind", "broken"] {
        compose.push_str(&format!(
            "  {s}:\n    image: {}:1.0.0\n    network_mode: none\n    labels:\n      lookout.test: \"{}\"\n",
            repo(s),
            scratch.id
        ));
    }
    let compose_file = dir.join("compose.yaml");
    std::fs::write(&compose_file, compose).unwrap();
    let _project = Project {
        dir: dir.clone(),
        scratch_id: scratch.id.clone(),
    };
    run(Command::new("docker").current_dir(&dir).args([
        "compose",
        "-f",
        "compose.yaml",
        "up",
        "-d",
    ]));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = format!(
        "state_file = \"{}\"\ncheck_interval = \"1h\"\nhealth_timeout = \"20s\"\nhealth_stable = \"2s\"\ncompose_timeout = \"60s\"\nlisten = \"{addr}\"\napi_token = \"{TOKEN}\"\nfirst_check_at_start = true\n\n[web]\nread_without_token = true\n",
        scratch.join("state/state.json").display()
    );
    // fresh and behind may change only in a window twelve hours away: the daemon's own passes
    // hold their updates, so they show as available until the page asks (an operator's update
    // does not wait for the window).
    let hour = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour();
    let window = format!(
        "maintenance_window = \"{:02}:00-{:02}:00\"\ntimezone = \"UTC\"\n",
        (hour + 12) % 24,
        (hour + 13) % 24
    );
    for s in ["fresh", "behind", "broken"] {
        config.push_str(&format!(
            "\n[[services]]\nname = \"{s}\"\ncompose_file = \"{}\"\ncompose_service = \"{s}\"\nimage = \"{}:1.0.0\"\npolicy = \"semver\"\n{}",
            compose_file.display(),
            repo(s),
            if s == "broken" { "" } else { &window }
        ));
    }
    let config_path = scratch.write("lookout.toml", config);

    // `broken` tries an unhealthy 2.0.0 once and rolls back; `behind` gets a 1.1.0.
    images.push(build(&scratch, &repo("broken"), "2.0.0", UNHEALTHY));
    let out = lookout()
        .arg("--config")
        .arg(&config_path)
        .args(["update", "broken"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the unhealthy candidate rolls back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    images.push(build(&scratch, &repo("behind"), "1.1.0", HEALTHY));

    let log = scratch.join("lookout.log");
    let mut daemon = Daemon::start(&config_path, &addr, &log, None);
    daemon.wait_healthy(Duration::from_secs(30));
    wait_for(
        "the first check of every service",
        Duration::from_secs(90),
        || {
            ["fresh", "behind", "broken"]
                .iter()
                .all(|s| service(&addr, s)["last_result"].is_object())
                .then_some(())
        },
    );
    let base = format!("http://{addr}");

    // Read without logging in ([web] read_without_token): the three states.
    let b = Browser::start(&scratch, false).await;
    b.client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(
        rows(&b).await,
        [
            "behind=update_available",
            "broken=rolled_back",
            "fresh=up_to_date"
        ],
        "{}",
        daemon.log()
    );
    b.screenshot("main-light.png").await;

    // Pressing update without logging in is refused, and nothing changes.
    b.click("tr[data-name=\"behind\"] button[value=\"update\"]")
        .await;
    b.until(
        "the refusal is shown",
        Duration::from_secs(10),
        "const e = document.getElementById('error'); return !e.hidden && e.textContent.includes('Log in');",
    )
    .await;
    assert!(
        service(&addr, "behind")["running"]
            .as_str()
            .unwrap()
            .contains(":1.0.0@")
    );

    // Log in with the token: a strict, HttpOnly session cookie, and the token is not kept.
    b.click("a[href$=\"/login\"]").await;
    let token = b
        .client
        .find(fantoccini::Locator::Css("#token"))
        .await
        .unwrap();
    token.send_keys(TOKEN).await.unwrap();
    b.click("form.login button[type=submit]").await;
    b.until(
        "logged in",
        Duration::from_secs(10),
        "return document.body.innerText.includes('Log out');",
    )
    .await;
    let cookie = b.client.get_named_cookie("lookout_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert!(!cookie.value().contains(TOKEN));
    let stored = b.js("return document.cookie").await;
    assert!(
        !stored.as_str().unwrap().contains("lookout_session"),
        "HttpOnly: {stored}"
    );

    // A form post without the CSRF token is refused, logged in or not.
    b.js("const f = document.createElement('form'); f.method = 'post'; f.action = document.body.dataset.base + '/services/behind'; const i = document.createElement('input'); i.type = 'hidden'; i.name = 'do'; i.value = 'update'; f.appendChild(i); document.body.appendChild(f); f.submit(); return true;").await;
    b.until(
        "the CSRF refusal",
        Duration::from_secs(10),
        "return document.body.innerText.includes('CSRF token is missing or wrong');",
    )
    .await;
    assert!(
        service(&addr, "behind")["running"]
            .as_str()
            .unwrap()
            .contains(":1.0.0@")
    );

    // Update from the page: the row goes through `updating` to up to date, without a reload.
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.until(
        "the live stream is open",
        Duration::from_secs(10),
        "return !document.getElementById('live').hidden;",
    )
    .await;
    b.js("window.__same = 42; window.__seen = []; new MutationObserver(() => { const r = document.querySelector('tr[data-name=\"behind\"]'); if (r) window.__seen.push(r.dataset.status); }).observe(document.querySelector('#services tbody'), {subtree: true, childList: true, attributes: true}); return true;").await;
    b.click("tr[data-name=\"behind\"] button[value=\"update\"]")
        .await;
    b.until(
        "behind is up to date on the same page",
        Duration::from_secs(120),
        "const r = document.querySelector('tr[data-name=\"behind\"]'); return window.__same === 42 && r && r.dataset.status === 'up_to_date';",
    )
    .await;
    let seen = b.js("return window.__seen").await;
    assert!(
        seen.as_array().unwrap().iter().any(|s| s == "updating"),
        "the row showed the update running: {seen}"
    );
    let behind = service(&addr, "behind");
    assert!(
        behind["running"].as_str().unwrap().contains(":1.1.0@"),
        "{behind}"
    );

    // A change the page did not ask for arrives by the event stream alone: a new fresh image,
    // and a check asked for through the API.
    images.push(build(&scratch, &repo("fresh"), "1.0.1", HEALTHY));
    let (status, body) = http(&addr, "POST", "/api/v1/check", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    b.until(
        "fresh shows its update without a reload",
        Duration::from_secs(30),
        "const r = document.querySelector('tr[data-name=\"fresh\"]'); return window.__same === 42 && r && r.dataset.status === 'update_available';",
    )
    .await;

    // The service page: the blocked candidate, the rollback and its reason, the source links.
    b.client.set_window_size(1400, 1500).await.unwrap();
    b.client
        .goto(&format!("{base}/services/broken"))
        .await
        .unwrap();
    let page = b.text("main").await;
    assert!(page.contains("Blocked candidate"), "{page}");
    assert!(page.contains(":2.0.0@sha256:"), "{page}");
    assert!(page.contains("rolled back"), "{page}");
    let compare = b
        .js("const a = document.getElementById('compare'); return a ? a.href : null;")
        .await;
    assert_eq!(
        compare, "https://github.com/example/broken/compare/0000100...0000200",
        "{page}"
    );
    b.screenshot("service.png").await;
    b.client.set_window_size(1400, 900).await.unwrap();

    // Dark mode follows the system.
    let dark = Browser::start(&scratch, true).await;
    dark.client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(
        dark.js("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await,
        true
    );
    assert_eq!(
        dark.js("return getComputedStyle(document.body).backgroundColor")
            .await,
        "rgb(15, 18, 23)"
    );
    dark.screenshot("main-dark.png").await;
    dark.close().await;

    // Logging out ends the session.
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.click("form[action$=\"/logout\"] button").await;
    b.until(
        "logged out",
        Duration::from_secs(10),
        "return document.body.innerText.includes('Logged out.');",
    )
    .await;
    assert!(b.client.get_named_cookie("lookout_session").await.is_err());
    b.close().await;
    assert_eq!(daemon.stop(Duration::from_secs(20)), 0);
    drop(images);
}

/// A fake host with `n` services: the first half can move to a newer image (held: they are
/// disabled), the second half is up to date.
fn host_with(n: usize, extra: &str) -> FakeHost {
    let scratch = Scratch::new("web-many");
    let mut compose = String::from("services:\n");
    let mut services = String::new();
    let runtime = FakeRuntime::default();
    let registry = Arc::new(FakeRegistry::default());
    let old = digest("web 1.0.0");
    runtime.local_image(WEB, "1.0.0", &old, Some(Health::Healthy));
    registry.push("team/web", "1.0.0", &old);
    let db = digest("db 16");
    runtime.local_image("registry.test:5000/team/db", "16", &db, None);
    registry.push("team/db", "16", &db);
    for i in 0..n {
        let (image, enabled) = if i < n / 2 {
            ("registry.test:5000/team/web:1.0.0", "false")
        } else {
            ("registry.test:5000/team/db:16", "true")
        };
        compose.push_str(&format!("  svc{i:03}:\n    image: {image}\n"));
        services.push_str(&format!(
            "\n[[services]]\nname = \"svc{i:03}\"\ncompose_file = \"{{file}}\"\ncompose_service = \"svc{i:03}\"\nimage = \"{image}\"\npolicy = \"semver\"\nenabled = {enabled}\n"
        ));
    }
    let compose_file = scratch.write("app/compose.yaml", compose);
    for i in 0..n {
        let image = if i < n / 2 {
            "registry.test:5000/team/web:1.0.0"
        } else {
            "registry.test:5000/team/db:16"
        };
        runtime.run("app", &format!("svc{i:03}"), image);
    }
    let config = format!(
        "state_file = \"{}\"\ncheck_interval = 60\nhealth_timeout = \"2s\"\nhealth_stable = \"0s\"\ncompose_timeout = \"5s\"\napi_token = \"{TOKEN}\"\n{extra}\n{}",
        scratch.join("state/state.json").display(),
        services.replace("{file}", &compose_file.display().to_string())
    );
    let config_path = scratch.write("lookout.toml", config);
    let newer = digest("web 1.1.0");
    registry.push("team/web", "1.1.0", &newer);
    runtime.publish(WEB, &newer, Some(Health::Healthy));
    let compose = FakeCompose::new(runtime.clone());
    FakeHost {
        scratch,
        compose_file,
        config_path,
        runtime,
        compose,
        registry,
    }
}

/// The daemon on `host`'s fakes, in process: its address and what stops it.
async fn serve(
    host: &FakeHost,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (engine, deliveries) = host.engine();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let reload = Reload {
        requests: reload_rx,
        load: Box::new(|| anyhow::bail!("no reloads in this test")),
    };
    let mut parts = Parts::new(
        &host.config(),
        engine,
        deliveries,
        listener,
        Arc::new(SystemClock),
        reload,
    );
    parts.first_check_at_start = true;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon::serve(parts, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_services_make_a_small_page_that_renders_fast() {
    let host = host_with(200, "\n[web]\nread_without_token = true\n");
    let (addr, stop, task) = serve(&host).await;
    let client = lookout::tls::client();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(format!("{base}/api/v1/services"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list = v["services"].as_array().unwrap();
        if list.len() == 200 && list.iter().all(|s| s["last_result"].is_object()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first check did not finish: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What the server sends: bytes and time.
    let started = Instant::now();
    let html = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served = started.elapsed();
    assert_eq!(html.matches("<tr data-name=").count(), 200);
    assert!(
        html.contains("100 update available") && html.contains("100 up to date"),
        "{html}"
    );
    let bytes = html.len();
    let per_service = bytes / 200;
    // What the browser does with it.
    let b = Browser::start(&host.scratch, false).await;
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.until(
        "the first paint",
        Duration::from_secs(10),
        "return performance.getEntriesByName('first-contentful-paint').length > 0;",
    )
    .await;
    let fcp = b
        .js("return performance.getEntriesByName('first-contentful-paint')[0].startTime")
        .await
        .as_f64()
        .unwrap();
    let dom = b
        .js("const n = performance.getEntriesByType('navigation')[0]; return n.domContentLoadedEventEnd")
        .await
        .as_f64()
        .unwrap();
    eprintln!(
        "200 services: {bytes} bytes of HTML ({per_service} per service), served in {} ms; first contentful paint {fcp:.0} ms, DOMContentLoaded {dom:.0} ms",
        served.as_millis()
    );
    assert!(
        bytes < 250_000,
        "the page weighs {bytes} bytes for 200 services"
    );
    assert!(fcp < 3000.0, "first contentful paint after {fcp} ms");
    b.close().await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_with_javascript_off_and_on_a_phone() {
    let host = host_with(2, "");
    let (addr, stop, task) = serve(&host).await;
    let base = format!("http://{addr}");
    let client = lookout::tls::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = client
            .get(format!("{base}/api/v1/services"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["last_result"].is_object())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first check did not finish: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = Browser::start_with(&host.scratch, false, false).await;
    // Without a session the page sends to the login form, which is a plain form post.
    b.client
        .goto(&format!("{base}/services/svc000"))
        .await
        .unwrap();
    b.at("/login").await;
    let token = b
        .client
        .find(fantoccini::Locator::Css("#token"))
        .await
        .unwrap();
    token.send_keys(TOKEN).await.unwrap();
    b.click("form.login button[type=submit]").await;
    // Back where the login started.
    b.at("/services/svc000").await;
    // A button is a form: the update starts as a job and the page names it.
    b.click("button[value=\"update\"]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = loop {
        let url = b.client.current_url().await.unwrap();
        if url.query().unwrap_or("").starts_with("job=") {
            break url;
        }
        assert!(Instant::now() < deadline, "no job page: {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    b.at(url.path()).await;
    assert!(
        b.body().await.contains("Started the update of svc000."),
        "{}",
        b.body().await
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        b.client
            .goto(&format!("{base}/services/svc000"))
            .await
            .unwrap();
        if b.text("#status").await == "up to date" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "svc000 was not updated: {}",
            b.body().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = b.body().await;
    assert!(
        page.contains("Candidate\nnone") && !page.contains("Update now"),
        "{page}"
    );
    // Filters and sorting are links and a GET form.
    b.client
        .goto(&format!("{base}/?status=up_to_date&sort=name"))
        .await
        .unwrap();
    let rows = b
        .client
        .find_all(fantoccini::Locator::Css("#services tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "both are up to date now");
    b.client
        .goto(&format!("{base}/?status=paused"))
        .await
        .unwrap();
    assert!(b.body().await.contains("No service matches."));
    b.close().await;

    // On a phone, each row is a card and nothing overflows sideways.
    let phone = Browser::start(&host.scratch, false).await;
    phone.client.set_window_size(390, 844).await.unwrap();
    phone.client.goto(&format!("{base}/login")).await.unwrap();
    let token = phone
        .client
        .find(fantoccini::Locator::Css("#token"))
        .await
        .unwrap();
    token.send_keys(TOKEN).await.unwrap();
    phone.click("form.login button[type=submit]").await;
    phone
        .until(
            "logged in",
            Duration::from_secs(10),
            "return !!document.querySelector('#services');",
        )
        .await;
    assert_eq!(
        phone
            .js("return getComputedStyle(document.querySelector('#services tr')).display")
            .await,
        "block"
    );
    assert_eq!(
        phone
            .js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
            .await,
        true
    );
    phone.screenshot("phone.png").await;
    phone.close().await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_as_the_openapi_document_says() {
    let version = Command::new("schemathesis").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is missing: run tests/run, which installs it from PyPI ({version:?})"
    );
    let host = FakeHost::new("web-schemathesis", &format!("api_token = \"{TOKEN}\""));
    host.publish("1.1.0", Some(Health::Healthy));
    let (addr, stop, task) = serve(&host).await;
    let report = host.scratch.join("schemathesis");
    let schema = format!("http://{addr}/api/v1/openapi.json");
    let out = tokio::task::spawn_blocking({
        let report = report.clone();
        move || {
            Command::new("schemathesis")
                .args(["run", &schema, "--checks", "all"])
                .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
                // An endless stream: tested in src/web/tests.rs and the browser test.
                .args(["--exclude-path", "/api/v1/events"])
                .args(["--max-examples", "30", "--seed", "18", "--no-color"])
                .args(["--generation-database", "none", "--request-timeout", "30"])
                .arg("--report-dir")
                .arg(&report)
                .output()
                .expect("run schemathesis")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
