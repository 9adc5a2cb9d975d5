//! Secrets never in output, and input refused by grammar: the `lookout` binary as an operator
//! runs it, with configurations full of mistakes next to secrets.
//!
//! Every command an operator would try on a broken configuration — `config validate`, `check`,
//! `doctor` (text and JSON), `status`, a `run` that cannot start, a SIGHUP reload of a running
//! daemon — is run for real, and everything it prints (stdout and stderr, the daemon's log) is
//! searched for each secret. A hostile registry that echoes the credentials it receives is part
//! of the setup, so that errors coming from elsewhere are covered too.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::fake_http::{FakeHttp, Response};
use crate::util::{Scratch, free_port, lookout};

const API_TOKEN: &str = "apitoken-5f1c2e9a7b3d4c6e";
const HOOK_SECRET: &str = "hooksecret-8a7b6c5d4e3f2a1b";
const REGISTRY_PASSWORD: &str = "regpass-Zx9q2w3e4r5t";
const ENV_PASSWORD: &str = "envpass-1q2w3e4r5t6y";
const WEBHOOK_SECRET: &str = "whsecret-0a1b2c3d4e5f";
const SLACK_TOKEN: &str = "slackTOKEN1234abcdWXYZ";
const DISCORD_TOKEN: &str = "discordTok-9f8e7d6c5b4a";
const URL_PASSWORD: &str = "urlpass-77aa88bb";
const QUERY_TOKEN: &str = "querytoken-3c4d5e6f";
const AWS_SECRET: &str = "awsSecretKey/abcdEFGH1234";
const NTFY_TOKEN: &str = "tk_ntfyToken8d7c6b5a";
const TELEGRAM_SECRET: &str = "AAHtgSecret9x8y7z6w5v";
const GOTIFY_TOKEN: &str = "AgotifyTok.4e5r6t7y";
const MATRIX_TOKEN: &str = "syt_matrixTok_1a2b3c4d";
const PUSHOVER_TOKEN: &str = "azPushoverTok5u6i7o8p";
const SMTP_PASSWORD: &str = "smtpPass-6t5r4e3w2q";
const MQTT_PASSWORD: &str = "mqttPass-1z2x3c4v5b";
const MATRIX_PASSWORD: &str = "matrixPass-9o8i7u6y";
/// `bob:regpass-…` as HTTP Basic sends it.
const BASIC_CREDENTIALS: &str = "Ym9iOnJlZ3Bhc3MtWng5cTJ3M2U0cjV0";

const SECRETS: &[&str] = &[
    API_TOKEN,
    HOOK_SECRET,
    REGISTRY_PASSWORD,
    ENV_PASSWORD,
    WEBHOOK_SECRET,
    SLACK_TOKEN,
    DISCORD_TOKEN,
    URL_PASSWORD,
    QUERY_TOKEN,
    AWS_SECRET,
    BASIC_CREDENTIALS,
    NTFY_TOKEN,
    TELEGRAM_SECRET,
    GOTIFY_TOKEN,
    MATRIX_TOKEN,
    PUSHOVER_TOKEN,
    SMTP_PASSWORD,
    MQTT_PASSWORD,
    MATRIX_PASSWORD,
];

fn slack_url() -> String {
    format!("https://hooks.slack.com/services/T0LOOKOUT/B0LOOKOUT/{SLACK_TOKEN}")
}

fn discord_url() -> String {
    format!("https://discord.com/api/webhooks/112233/{DISCORD_TOKEN}")
}

fn generic_url() -> String {
    format!("https://hookuser:{URL_PASSWORD}@127.0.0.1:1/hook?token={QUERY_TOKEN}")
}

/// A registry on loopback that asks for credentials, then refuses them in messages that quote
/// them back: the password, the `Authorization` header, a URL with the password in it.
fn hostile_registry() -> FakeHttp {
    FakeHttp::start(|req| match req.header("authorization") {
        None => Response::status(401)
            .header("WWW-Authenticate", "Basic realm=\"hostile\"")
            .header("Docker-Distribution-API-Version", "registry/2.0"),
        Some(auth) => {
            let echo = format!(
                "Authorization: {auth}; password={REGISTRY_PASSWORD}; see https://bob:{REGISTRY_PASSWORD}@127.0.0.1/x?token={QUERY_TOKEN}"
            );
            Response::json(
                403,
                &serde_json::json!({"errors": [{"code": "DENIED", "message": echo, "detail": echo}]}),
            )
        }
    })
}

/// What one command printed.
struct Printed {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Printed {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Fails when any secret appears in anything printed.
    fn assert_no_secret(&self) {
        let all = self.all();
        for secret in SECRETS {
            assert!(
                !all.contains(secret),
                "{} printed the secret {secret:?}:\n--- stdout\n{}\n--- stderr\n{}",
                self.what,
                self.stdout,
                self.stderr
            );
        }
    }
}

/// Runs `lookout ARGS` with the test's environment, killing it after `limit`.
fn run_lookout(what: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Printed {
    let mut cmd = lookout();
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("LOOKOUT_TEST_PASSWORD", ENV_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Printed {
        what: format!("{what}: lookout {}", args.join(" ")),
        code,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// A valid configuration holding every kind of secret, its state in `scratch`, one service on
/// the hostile registry.
fn good_config(scratch: &Scratch, registry: &str, listen: &str) -> String {
    let compose = scratch.write(
        "app/compose.yaml",
        format!(
            "services:\n  app:\n    image: {registry}/team/app:1.0.0\n    network_mode: none\n"
        ),
    );
    format!(
        r#"state_file = "{state}"
listen = "{listen}"
api_token = "{API_TOKEN}"
hook_secret = "{HOOK_SECRET}"
webhook_url = "{generic}"
log_level = "debug"
first_check_at_start = true

[[webhooks]]
url = "{slack}"
format = "slack"
secret = "{WEBHOOK_SECRET}"

[[webhooks]]
url = "{discord}"
format = "discord"

[[services]]
name = "app"
image = "{registry}/team/app:1.0.0"
compose_file = "{compose}"
policy = "semver"
registry_config = {{ username = "bob", password = "{REGISTRY_PASSWORD}" }}

[[services]]
name = "envpass"
image = "{registry}/team/other:1.0.0"
compose_file = "{compose}"
compose_service = "app"
registry_config = {{ username = "bob", password = "${{LOOKOUT_TEST_PASSWORD}}" }}

[[services]]
name = "ecr"
enabled = false
image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/api:1"
compose_file = "{compose}"
registry_config = {{ aws_access_key_id = "AKIAEXAMPLE", aws_secret_access_key = "{AWS_SECRET}" }}
"#,
        state = scratch.join("state/state.json").display(),
        generic = generic_url(),
        slack = slack_url(),
        discord = discord_url(),
        compose = compose.display(),
    )
}

/// Configurations with a mistake in, next to or instead of a secret: (file name, text).
fn mistakes() -> Vec<(&'static str, String)> {
    let service = "[[services]]\nname = \"a\"\nimage = \"nginx:1.27\"\ncompose_file = \"/srv/a/compose.yaml\"\n";
    vec![
        // TOML syntax errors on a secret's own line, which TOML's messages would echo.
        (
            "unclosed-string.toml",
            format!("api_token = \"{API_TOKEN}\n"),
        ),
        (
            "trailing-garbage.toml",
            format!("hook_secret = \"{HOOK_SECRET}\" oops\n"),
        ),
        ("bare-value.toml", format!("hook_secret = {HOOK_SECRET}\n")),
        (
            "inline-table.toml",
            format!(
                "{service}registry_config = {{ username = \"bob\", password = \"{REGISTRY_PASSWORD}\" "
            ),
        ),
        (
            "duplicate.toml",
            format!("api_token = \"{API_TOKEN}\"\napi_token = \"{API_TOKEN}\"\n"),
        ),
        (
            "webhook-line.toml",
            format!("[[webhooks]]\nurl = \"{}\nsecret = \"{WEBHOOK_SECRET}\"\n", slack_url()),
        ),
        // JSON syntax errors.
        (
            "broken.json",
            format!("{{\"api_token\": \"{API_TOKEN}\",, \"services\": []}}"),
        ),
        ("unterminated.json", format!("{{\"hook_secret\": \"{HOOK_SECRET}")),
        // `${` mistakes inside secrets.
        (
            "unclosed-var.toml",
            format!(
                "{service}registry_config = {{ username = \"bob\", password = \"{REGISTRY_PASSWORD}${{oops\" }}\n"
            ),
        ),
        (
            "bad-var-name.toml",
            format!("api_token = \"{API_TOKEN}${{not a name}}\"\n"),
        ),
        (
            "webhook-secret-var.toml",
            format!(
                "[[webhooks]]\nurl = \"{}\"\nsecret = \"${{{WEBHOOK_SECRET}\"\n",
                discord_url()
            ),
        ),
        // Bad webhook URLs, each carrying a credential.
        (
            "webhook-space.toml",
            format!("webhook_url = \"{} \"\n", slack_url()),
        ),
        (
            "webhook-scheme.toml",
            format!(
                "webhook_url = \"ftp://hookuser:{URL_PASSWORD}@example.com/x?token={QUERY_TOKEN}\"\n"
            ),
        ),
        (
            "webhook-no-scheme.toml",
            format!(
                "[[webhooks]]\nurl = \"hooks.slack.com/services/T0/B0/{SLACK_TOKEN}\"\nformat = \"teams\"\n"
            ),
        ),
        (
            "webhook-bad-port.toml",
            format!("[[webhooks]]\nurl = \"https://discord.com:99999/api/webhooks/1/{DISCORD_TOKEN}\"\nsecret = \"{WEBHOOK_SECRET}\"\ntimeout = \"1h\"\n"),
        ),
        (
            "endpoint-url.toml",
            format!(
                "{service}registry_config = {{ endpoint_url = \"https://bob:{URL_PASSWORD}@ecr example\", aws_access_key_id = \"AKIAEXAMPLE\", aws_secret_access_key = \"{AWS_SECRET}\" }}\n"
            ),
        ),
        // Secrets of the wrong type, or where a table belongs.
        ("token-list.toml", format!("api_token = [\"{API_TOKEN}\"]\n")),
        (
            "registry-config-string.json",
            format!(
                "{{\"services\": [{{\"name\": \"a\", \"image\": \"nginx\", \"compose_file\": \"/c.yml\", \"registry_config\": \"bob:{REGISTRY_PASSWORD}\"}}]}}"
            ),
        ),
        (
            "services-object.json",
            format!(
                "{{\"services\": {{\"name\": \"a\", \"registry_config\": {{\"password\": \"{REGISTRY_PASSWORD}\"}}}}}}"
            ),
        ),
        // Other mistakes in a file full of secrets.
        (
            "misc.toml",
            format!(
                "listen = \"0.0.0.0:9100\"\nhook_secret = \"{HOOK_SECRET}\"\nhealth_timeout = 18446744073709551615\npasword = \"{REGISTRY_PASSWORD}\"\n[[webhooks]]\nurl = \"{}\"\nsecret = \"{WEBHOOK_SECRET}\"\nevents = [\"{WEBHOOK_SECRET}\"]\n{service}image_tag = \"x\"\nregistry_config = {{ username = \"bob\", password = \"{REGISTRY_PASSWORD}\", colour = \"{REGISTRY_PASSWORD}\" }}\n",
                generic_url()
            ),
        ),
        // Notification channels: shoutrrr URLs and service fields with mistakes next to
        // their tokens.
        (
            "notify.toml",
            format!(
                "[[notify]]\nurl = \"ntfy://:{NTFY_TOKEN}@ntfy.example.org/alerts?colour=red\"\n\
                 [[notify]]\nurl = \"telegram://110201543:{TELEGRAM_SECRET}@telegram?chats=nope\"\n\
                 [[notify]]\nurl = \"gotify://gotify.example.com/{GOTIFY_TOKEN}/?priority=99\"\n\
                 [[notify]]\nurl = \"smtp://bob:{URL_PASSWORD}@mail.example.com:587/?from=a@example.com&to=b@example.com\"\n\
                 [[notify]]\nservice = \"matrix\"\nhomeserver = \"https://matrix.example.org\"\naccess_token = \"{MATRIX_TOKEN}\"\nrooms = [\"#ops:example.org\"]\n\
                 [[notify]]\nservice = \"pushover\"\ntoken = \"{PUSHOVER_TOKEN}\"\nuser = 5\n\
                 [[notify]]\nservice = \"telegram\"\nbot_token = \"{TELEGRAM_SECRET}\"\nchats = [\"@ops\"]\n\
                 [[notify]]\nurl = \"slack://T0LOOKOUT/B0LOOKOUT/{SLACK_TOKEN}?colour=red\"\n"
            ),
        ),
        // Email, MQTT and Matrix password login: passwords next to mistakes.
        (
            "notify-passwords.toml",
            format!(
                "[[notify]]\nurl = \"smtp://bob:{SMTP_PASSWORD}@mail.example.com:587/?from=a@example.com&to=b@example.com&auth=CRAMMD5\"\n\
                 [[notify]]\nurl = \"smtp://bob:{SMTP_PASSWORD}@mail.example.com/?from=a@example.com&to=b@example.com&usestarttls=no\"\n\
                 [[notify]]\nservice = \"email\"\nhost = \"mail.example.com\"\nusername = \"bob\"\npassword = \"{SMTP_PASSWORD}\"\nfrom = \"a@example.com\"\nto = [\"{SMTP_PASSWORD}\"]\n\
                 [[notify]]\nurl = \"mqtt://bob:{MQTT_PASSWORD}@broker.example.com/?colour=red\"\n\
                 [[notify]]\nurl = \"mqtts://broker.example.com/?password={MQTT_PASSWORD}&disabletls=yes\"\n\
                 [[notify]]\nservice = \"mqtt\"\nhost = \"broker.example.com\"\npassword = \"{MQTT_PASSWORD}\"\ntopic = \"a/#\"\n\
                 [[notify]]\nurl = \"matrix://bob:{MATRIX_PASSWORD}@matrix.example.org/?colour=red\"\n\
                 [[notify]]\nservice = \"matrix\"\nhomeserver = \"https://matrix.example.org\"\nuser = \"bob\"\npassword = \"{MATRIX_PASSWORD}\"\naccess_token = \"{MATRIX_PASSWORD}\"\nrooms = [\"!a:b\"]\n"
            ),
        ),
        (
            "notify-url-type.toml",
            format!("[[notify]]\nurl = [\"discord://{DISCORD_TOKEN}@1\"]\nname = \"{DISCORD_TOKEN}\"\n"),
        ),
        (
            "weak-token.toml",
            "api_token = \"short-tok\"\nhook_secret = \"${LOOKOUT_TEST_PASSWORD}x\"\nlisten = \"[::]:9100\"\n"
                .to_owned(),
        ),
    ]
}

fn commands_on(file: &Path) -> Vec<Vec<String>> {
    let f = file.to_str().unwrap().to_owned();
    let with = |args: &[&str]| {
        let mut v = vec!["--config".to_owned(), f.clone()];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    };
    vec![
        vec!["config".into(), "validate".into(), f.clone()],
        with(&["check"]),
        with(&["check", "--json"]),
        with(&["doctor"]),
        with(&["doctor", "--json"]),
        with(&["status"]),
        with(&["run"]),
    ]
}

#[test]
fn no_command_prints_a_secret_of_a_configuration_full_of_mistakes() {
    let scratch = Scratch::new("secrets-mistakes");
    let mut runs = 0;
    for (name, text) in mistakes() {
        let file = scratch.write(name, &text);
        for args in commands_on(&file) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let printed = run_lookout(name, &args, &[], Duration::from_secs(60));
            printed.assert_no_secret();
            assert!(
                printed.code.is_some_and(|c| c != 0),
                "{} should fail (exit {:?}):\n{}",
                printed.what,
                printed.code,
                printed.all()
            );
            // The mistake is reported, with the file's name: the test sees real messages.
            assert!(
                printed.all().contains(name),
                "{} does not name the file:\n{}",
                printed.what,
                printed.all()
            );
            runs += 1;
        }
    }
    // Secrets arriving through environment overrides, with a mistake in them.
    let file = scratch.write("empty.toml", "");
    for (var, value) in [
        ("LOOKOUT_HOOK_SECRET", format!("{HOOK_SECRET}${{oops")),
        ("LOOKOUT_API_TOKEN", format!("${{{API_TOKEN}}}")),
        ("WEBHOOK_URL", format!("{} x", slack_url())),
        ("LOOKOUT_LISTEN", "0.0.0.0:1".to_owned()),
    ] {
        for args in commands_on(&file) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let printed = run_lookout(var, &args, &[(var, &value)], Duration::from_secs(60));
            printed.assert_no_secret();
            assert!(
                printed.all().contains(var),
                "{} does not name {var}:\n{}",
                printed.what,
                printed.all()
            );
            runs += 1;
        }
    }
    eprintln!("{runs} commands run, none printed a secret");
}

#[test]
fn check_doctor_and_a_failed_start_print_no_secret_with_a_hostile_registry() {
    let scratch = Scratch::new("secrets-hostile");
    let registry = hostile_registry();
    // A port in use: `lookout run` gets past the configuration, then cannot listen.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let config = scratch.write(
        "lookout.toml",
        good_config(&scratch, &registry.addr, &listen),
    );
    let file = config.to_str().unwrap();

    let printed = run_lookout(
        "valid",
        &["config", "validate", file],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(printed.code, Some(0), "{}", printed.all());
    printed.assert_no_secret();

    for args in [
        vec!["--config", file, "check"],
        vec!["--config", file, "check", "--json"],
        vec!["--config", file, "doctor"],
        vec!["--config", file, "doctor", "--json"],
        vec!["--config", file, "run"],
    ] {
        let printed = run_lookout("hostile registry", &args, &[], Duration::from_secs(120));
        printed.assert_no_secret();
        assert!(
            printed.code.is_some_and(|c| c != 0),
            "{} should fail:\n{}",
            printed.what,
            printed.all()
        );
        eprintln!("--- {}\n{}", printed.what, printed.all());
    }
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.header("authorization").is_some()),
        "the registry was asked with credentials, so its answers quoted them"
    );
}

/// `lookout run` with a valid configuration, then SIGHUP after each broken version of it: the
/// journal (here the daemon's stderr) never shows a secret.
#[test]
fn a_sighup_reload_of_a_broken_file_logs_no_secret() {
    let scratch = Scratch::new("secrets-sighup");
    let registry = hostile_registry();
    let listen = format!("127.0.0.1:{}", free_port());
    let good = good_config(&scratch, &registry.addr, &listen);
    let config = scratch.write("lookout.toml", &good);
    let log_path = scratch.join("lookout.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env("LOOKOUT_TEST_PASSWORD", ENV_PASSWORD)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(scratch.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = |what: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done(&log()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} did not happen within 60 s; log:\n{}", log());
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the API listening", &|l| {
            l.contains("listening") && TcpStream::connect(&listen).is_ok()
        });
        wait_for("the first check", &|l| l.contains("check_finished"));
        let mut reloads = 0;
        for (_, text) in mistakes() {
            std::fs::write(&config, format!("{text}\n")).unwrap();
            Command::new("kill").args(["-HUP", &pid]).status().unwrap();
            reloads += 1;
            wait_for("the refused reload", &|l| {
                l.matches("the new configuration is invalid").count() >= reloads
            });
        }
        // And a good file again is taken.
        std::fs::write(&config, &good).unwrap();
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        wait_for("the good reload", &|l| l.contains("configuration reloaded"));
        reloads
    }));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let reloads = match result {
        Ok(n) => n,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let printed = Printed {
        what: format!("lookout run with {reloads} broken reloads"),
        code: None,
        stdout: std::fs::read_to_string(scratch.join("stdout.log")).unwrap_or_default(),
        stderr: log(),
    };
    printed.assert_no_secret();
    assert!(
        printed.stderr.contains("line ") && printed.stderr.contains("problem(s)"),
        "the refusals say why:\n{}",
        printed.stderr
    );
}

/// `lookout compose set-image` refuses references that break Docker's grammar, naming the value
/// and what is wrong, and refuses special files at once.
#[test]
fn compose_set_image_refuses_bad_references_and_special_files() {
    let scratch = Scratch::new("secrets-set-image");
    let compose = scratch.write(
        "compose.yaml",
        "services:\n  web:\n    image: nginx:1.25 # pinned\n",
    );
    let before = std::fs::read(&compose).unwrap();
    let file = compose.to_str().unwrap();
    let cases = [
        ("NGINX:1.27", "repository name \"NGINX\" must be lower-case"),
        ("x:y:z:1", "invalid tag \"y:z:1\": it contains `:`"),
        (
            "nginx:1.27/../x",
            "invalid registry host \"nginx:1.27\": the port must be a number from 1 to 65535",
        ),
        ("nginx/../x:1", "invalid path component \"..\""),
        (
            "nginx:.hidden",
            "invalid tag \".hidden\": it starts with `.` or `-`",
        ),
        (
            "nginx:1.27\u{1b}[2J",
            "invalid tag \"1.27\\u{1b}[2J\": it contains a character other than",
        ),
        ("nginx@sha256:zzz", "invalid digest \"sha256:zzz\""),
        ("", "image reference is empty"),
    ];
    for (image, says) in cases {
        let printed = run_lookout(
            "set-image",
            &[
                "compose",
                "set-image",
                "--file",
                file,
                "--service",
                "web",
                "--image",
                image,
                "--write",
            ],
            &[],
            Duration::from_secs(30),
        );
        assert_eq!(printed.code, Some(1), "{image:?}: {}", printed.all());
        assert!(
            printed.stderr.contains(says),
            "{image:?}: want {says:?} in\n{}",
            printed.stderr
        );
        assert!(printed.stdout.is_empty(), "{}", printed.stdout);
    }
    assert_eq!(
        std::fs::read(&compose).unwrap(),
        before,
        "nothing was written"
    );
    // A good reference still works.
    let printed = run_lookout(
        "set-image",
        &[
            "compose",
            "set-image",
            "--file",
            file,
            "--service",
            "web",
            "--image",
            "nginx:1.27",
        ],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(printed.code, Some(0), "{}", printed.all());
    assert!(
        printed.stdout.contains("+    image: nginx:1.27 # pinned"),
        "{}",
        printed.stdout
    );

    // Special files fail at once (the limit is generous: reading /dev/zero would never end).
    for (args, says) in [
        (
            vec![
                "compose",
                "set-image",
                "--file",
                "/dev/zero",
                "--service",
                "web",
                "--image",
                "nginx:1",
            ],
            "cannot read /dev/zero: not a regular file (a character device)",
        ),
        (
            vec!["config", "validate", "/dev/zero"],
            "cannot read configuration file /dev/zero: not a regular file (a character device)",
        ),
        (
            vec!["--config", "/dev/zero", "check"],
            "cannot read configuration file /dev/zero: not a regular file",
        ),
        (
            vec![
                "compose",
                "set-image",
                "--file",
                scratch.path().to_str().unwrap(),
                "--service",
                "web",
                "--image",
                "nginx:1",
            ],
            "not a regular file (a folder)",
        ),
    ] {
        let started = Instant::now();
        let printed = run_lookout("special file", &args, &[], Duration::from_secs(10));
        assert_eq!(printed.code, Some(1), "{}: {}", printed.what, printed.all());
        assert!(
            printed.stderr.contains(says),
            "{}: want {says:?} in\n{}",
            printed.what,
            printed.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            printed.what,
            started.elapsed()
        );
    }
    // An oversized configuration: refused with the size and the limit.
    let big = scratch.join("big.toml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(8 * 1024 * 1024 + 1)
        .unwrap();
    let printed = run_lookout(
        "big",
        &["config", "validate", big.to_str().unwrap()],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        printed
            .stderr
            .contains("is 8388609 bytes, more than the 8388608 lookout reads"),
        "{}",
        printed.stderr
    );
}
