//! Headless Chromium (Debian's `chromium`) driven through WebDriver (Debian's `chromium-driver`)
//! with fantoccini, for the web page's tests. `tests/run` installs both; a missing one fails
//! the test naming it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{Scratch, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser session with its own chromedriver, both ended on drop (the driver's process
/// group, so no chromium outlives a failed test).
pub(crate) struct Browser {
    driver: Child,
    pub client: Client,
}

impl Browser {
    /// A 1400×900 headless window; with `dark`, the page sees `prefers-color-scheme: dark`.
    pub(crate) async fn start(scratch: &Scratch, dark: bool) -> Self {
        Self::start_with(scratch, dark, true).await
    }

    /// [`Browser::start`], with JavaScript on or off.
    pub(crate) async fn start_with(scratch: &Scratch, dark: bool, javascript: bool) -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run tests/run, which installs Debian's chromium"
        );
        assert!(
            Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: run tests/run, which installs Debian's chromium-driver"
        );
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = scratch.join(&format!("chromium-{port}"));
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1400,900".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if !javascript {
            args.push("--blink-settings=scriptEnabled=false".into());
        }
        if dark {
            args.push("--force-dark-mode".into());
            // Blink's PreferredColorScheme: 0 is dark.
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
        Self { driver, client }
    }

    /// Waits until the page's URL path is `path` (after a click that navigates), for at most
    /// 10 s; returns the URL.
    pub(crate) async fn at(&self, path: &str) -> url::Url {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.client.current_url().await.expect("the current URL");
            if url.path() == path && self.js_ready().await {
                return url;
            }
            assert!(Instant::now() < deadline, "not at {path} but at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the document finished loading (works without JavaScript too: WebDriver's own
    /// scripts run).
    async fn js_ready(&self) -> bool {
        self.client
            .execute("return document.readyState", Vec::new())
            .await
            .is_ok_and(|v| v == "complete")
    }

    /// The page's text, for a browser without JavaScript (WebDriver still reads the page).
    pub(crate) async fn body(&self) -> String {
        self.text("body").await
    }

    /// Runs `script` in the page and returns its value.
    pub(crate) async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns `true`, for at most `within`; fails naming `what`.
    pub(crate) async fn until(&self, what: &str, within: Duration, script: &str) {
        let deadline = Instant::now() + within;
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what} (page: {})",
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element `css` selects.
    pub(crate) async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(e) => format!("(no {css}: {e})"),
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Saves a PNG of the window as `name` in the screenshot folder, and returns its path.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (and chromium), then the driver.
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Where screenshots go: `LOOKOUT_SCREENSHOT_DIR`, else `target/tmp/screenshots` (the README's
/// pictures in `docs/screenshots/` are copied from a run).
pub(crate) fn screenshot_dir() -> PathBuf {
    std::env::var_os("LOOKOUT_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
}

fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}
