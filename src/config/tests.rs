use super::*;
use crate::telemetry::{EventKind, NotifyMode, Service};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_str(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    from_text(Path::new(name), text, env)
}

fn problems(name: &str, text: &str) -> Vec<String> {
    match load_str(name, text, &no_env) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected problems, got {other:?}"),
    }
}

const SEED: &str = include_str!("../../tests/fixtures/config/updater_config.json");

#[test]
fn the_seed_configuration_loads_unchanged() {
    let c = load_str("updater_config.json", SEED, &no_env).unwrap();
    assert_eq!(c.check_interval, Duration::from_secs(30));
    assert_eq!(c.services.len(), 3);
    let web = &c.services[0];
    assert_eq!(
        (web.name.as_str(), web.compose_service.as_str()),
        ("webapp", "web")
    );
    assert_eq!(web.image.to_string(), "docker.io/myregistry/webapp:latest");
    assert_eq!(web.registry_type, RegistryKind::DockerHub);
    assert_eq!(web.policy.kind(), PolicyKind::Digest);
    assert_eq!(
        web.compose_file,
        Some(PathBuf::from("/opt/apps/webapp/docker-compose.yml"))
    );
    let api = &c.services[1];
    assert_eq!(api.registry_type, RegistryKind::Ecr);
    assert_eq!(api.policy.kind(), PolicyKind::Glob);
    assert_eq!(api.registry.region.as_deref(), Some("us-east-1"));
    let release = &c.services[2];
    assert_eq!(release.policy.kind(), PolicyKind::Semver);
    assert!(web.enabled && release.enabled);
    assert_eq!(c.health_timeout, Duration::from_secs(180));
}

#[test]
fn toml_and_json_mean_the_same() {
    let toml = r#"
check_interval = "30s"
[[services]]
name = "webapp"
image = "myregistry/webapp:latest"
compose_file = "/opt/apps/webapp/docker-compose.yml"
compose_service = "web"
registry_type = "docker_hub"
"#;
    let t = load_str("lookout.toml", toml, &no_env).unwrap();
    let j = load_str("x.json", SEED, &no_env).unwrap();
    assert_eq!(t.check_interval, j.check_interval);
    assert_eq!(t.services[0].image, j.services[0].image);
    assert_eq!(t.services[0].compose_service, j.services[0].compose_service);
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let text = r#"{
      "check_interval": "soon",
      "log_level": "loud",
      "colour": "blue",
      "services": [
        {"name": "a", "image": "nginx", "compose_file": "/c.yml", "registry_type": "docker_hub"},
        {"name": "b", "image": "Nginx", "compose_file": "/c.yml", "registry_type": "dockerhub",
         "tag_patern": "x*", "tag_regex": "(", "update_level": "huge"},
        {"name": "a", "compose_file": "/c.yml", "image": "nginx", "registry_config": {"regoin": "x"}},
        "not an object"
      ]
    }"#;
    let got = problems("bad.json", text);
    let expect = [
        "check_interval: \"soon\" is not a duration",
        "log_level: \"loud\" is not one of trace, debug, info, warn, error",
        "services[1].image: image reference \"Nginx\": repository name \"Nginx\" must be lower-case",
        "services[1].registry_type: \"dockerhub\" is not one of docker_hub, ecr, gcr, oci",
        "services[1].update_level: \"huge\" is not one of major, minor, patch",
        "services[1].tag_regex: \"(\" is not a valid regex",
        "services[1].tag_patern: unknown key; did you mean \"tag_pattern\"?",
        "services[2].registry_config.regoin: unknown key; did you mean \"region\"?",
        "services[3]: expected a table / object",
        "services[2].name: \"a\" is already the name of services[0]",
        "colour: unknown key",
    ];
    for want in expect {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), expect.len(), "{}", got.join("\n"));
}

#[test]
fn required_fields() {
    let got = problems("x.toml", "[[services]]\nname = \"a\"\n");
    assert_eq!(
        got,
        [
            "services[0].image: is required",
            "services[0].compose_file: is required unless compose_project names the service's compose project, or container a standalone container"
        ]
    );
}

#[test]
fn environment_substitution_and_overrides() {
    let env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("AKIAEXAMPLE".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("s3cr3t-value".to_owned()),
        "CHECK_INTERVAL" => Some("3600         # seconds".to_owned()),
        "LOOKOUT_HEALTH_TIMEOUT" => Some("5m".to_owned()),
        "HEALTH_TIMEOUT" => Some("1".to_owned()),
        "PAUSE_UPDATES" => Some("1".to_owned()),
        "MAINTENANCE_WINDOW" => Some("02:00-04:00,23:30-00:30".to_owned()),
        "APPS" => Some("/srv".to_owned()),
        _ => None,
    };
    let text = r#"
check_interval = 30
[[services]]
name = "api"
image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/api:staging-old"
compose_file = "${APPS}/api/compose.yml"
tag_pattern = "staging-*"
registry_config = { aws_access_key_id = "${AWS_ACCESS_KEY_ID}", aws_secret_access_key = "${AWS_SECRET_ACCESS_KEY}", region = "${AWS_REGION:-us-east-1}" }
"#;
    let c = load_str("l.toml", text, &env).unwrap();
    assert_eq!(
        c.check_interval,
        Duration::from_secs(3600),
        "the environment wins over the file"
    );
    assert_eq!(
        c.health_timeout,
        Duration::from_secs(300),
        "LOOKOUT_* wins over the seed's name"
    );
    assert!(c.pause_updates);
    assert_eq!(
        c.maintenance_window.as_ref().unwrap()[1],
        TimeRange {
            start_minute: 1410,
            end_minute: 30
        }
    );
    let s = &c.services[0];
    assert_eq!(s.compose_file, Some(PathBuf::from("/srv/api/compose.yml")));
    assert_eq!(s.registry.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        s.registry.aws_secret_access_key.as_ref().unwrap().expose(),
        "s3cr3t-value"
    );
    assert!(
        !format!("{c:?}").contains("s3cr3t-value"),
        "secrets never show in Debug output"
    );
    assert_eq!(
        s.health_timeout,
        Duration::from_secs(300),
        "services inherit the global timeout"
    );
}

#[test]
fn an_override_with_a_bad_value_names_the_variable() {
    let env = |name: &str| (name == "LOOKOUT_LOG_FORMAT").then(|| "xml".to_owned());
    let got = match load_str("l.toml", "", &env) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        got[0].to_string(),
        "log_format (from environment variable LOOKOUT_LOG_FORMAT): \"xml\" is not one of plain, json"
    );
}

#[test]
fn unset_variables_are_warnings_and_leave_the_setting_out() {
    let text = r#"{"services": [{"name": "a", "image": "nginx", "compose_file": "/c.yml",
        "registry_config": {"username": "${HUB_USER}", "password": "${HUB_PASSWORD}"}}]}"#;
    let c = load_str("c.json", text, &no_env).unwrap();
    assert_eq!(c.services[0].registry.username, None);
    assert_eq!(c.warnings.len(), 2);
    assert!(
        c.warnings[0].to_string().contains("HUB_USER is not set"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let text = r#"{"api_token": "short-secret", "services": [{"name": "a", "image": "nginx", "compose_file": "/c.yml",
        "registry_config": {"password": 123456789, "username": "u"}}]}"#;
    let got = problems("c.json", text).join("\n");
    assert!(
        !got.contains("short-secret") && !got.contains("123456789"),
        "{got}"
    );
    assert!(
        got.contains("services[0].registry_config.password: expected a string, found a value"),
        "{got}"
    );
    assert!(
        got.contains("api_token: is shorter than 16 characters"),
        "{got}"
    );
}

#[test]
fn syntax_errors_name_the_file_and_place() {
    let e = load_str("/etc/lookout/lookout.toml", "check_interval = = 3", &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("configuration file /etc/lookout/lookout.toml is not valid TOML"),
        "{e}"
    );
    assert!(e.contains("line 1"), "{e}");
    let e = load_str("c.json", "{\"services\": [}", &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not valid JSON") && e.contains("line 1 column 15"),
        "{e}"
    );
}

#[test]
fn registry_kind_is_inferred_from_the_host() {
    let cases = [
        (
            "111111111111.dkr.ecr.us-east-1.amazonaws.com",
            RegistryKind::Ecr,
        ),
        (
            "111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn",
            RegistryKind::Ecr,
        ),
        ("gcr.io", RegistryKind::Gcr),
        ("eu.gcr.io", RegistryKind::Gcr),
        ("europe-west1-docker.pkg.dev", RegistryKind::Gcr),
        ("docker.io", RegistryKind::DockerHub),
        ("ghcr.io", RegistryKind::Oci),
        ("127.0.0.1:5000", RegistryKind::Oci),
        ("amazonaws.com.evil.io", RegistryKind::Oci),
    ];
    for (host, kind) in cases {
        assert_eq!(RegistryKind::infer(host), kind, "{host}");
    }
}

#[test]
fn maintenance_windows() {
    assert_eq!(
        parse_windows("02:00-04:00").unwrap(),
        [TimeRange {
            start_minute: 120,
            end_minute: 240
        }]
    );
    for bad in [
        "2:00-04:00",
        "02:00",
        "25:00-01:00",
        "02:00-02:00",
        "",
        "02:00-04:00,",
    ] {
        assert!(parse_windows(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_shipped_default_configuration_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lookout.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = from_text(&path, &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn schedule_window_and_webhook_keys() {
    let text = r#"
check_interval = "30m"
timezone = "Europe/Berlin"
maintenance_window = "22:00-02:00"
maintenance_days = "mon-fri"
first_check_at_start = false
webhook_url = "https://example.com/legacy"

[[webhooks]]
url = "https://hooks.slack.com/services/x"
format = "slack"
events = ["updated", "rolled_back"]
secret = "${HOOK_SECRET}"
timeout = "5s"

[[services]]
name = "web"
image = "nginx:1.27.0"
compose_file = "/c.yml"
maintenance_days = ["sat", "sun"]
timezone = "UTC"
"#;
    let env = |name: &str| (name == "HOOK_SECRET").then(|| "hunter2".to_owned());
    let c = load_str("x.toml", text, &env).unwrap();
    assert_eq!(
        c.timezone.as_ref().and_then(|t| t.iana_name()),
        Some("Europe/Berlin")
    );
    assert_eq!(
        c.maintenance_days.unwrap().to_string(),
        "mon,tue,wed,thu,fri"
    );
    assert!(!c.first_check_at_start);
    assert_eq!(
        c.check_jitter,
        Duration::from_secs(180),
        "10% of the interval"
    );
    assert!(c.schedule.is_none());
    let [slack, legacy] = &c.webhooks[..] else {
        panic!("{:?}", c.webhooks)
    };
    assert_eq!(slack.format, WebhookFormat::Slack);
    assert_eq!(
        slack.events.as_deref(),
        Some(&[EventKind::Updated, EventKind::RolledBack][..])
    );
    assert_eq!(slack.secret.as_ref().map(Secret::expose), Some("hunter2"));
    assert_eq!(slack.timeout, Duration::from_secs(5));
    assert_eq!(legacy.url, "https://example.com/legacy");
    assert_eq!(
        (legacy.format, legacy.events.is_none()),
        (WebhookFormat::Generic, true)
    );
    let web = &c.services[0];
    assert_eq!(web.maintenance_days.unwrap().to_string(), "sat,sun");
    assert_eq!(
        web.timezone.as_ref().and_then(|t| t.iana_name()),
        Some("UTC")
    );

    // Defaults: first check at start, jitter capped at 5 minutes, no jitter for cron.
    let c = load_str("x.toml", "check_interval = \"1d\"", &no_env).unwrap();
    assert!(c.first_check_at_start && c.timezone.is_none() && c.webhooks.is_empty());
    assert_eq!(c.check_jitter, Duration::from_secs(300));
    let c = load_str("x.toml", "schedule = \"0 3 * * mon-fri\"", &no_env).unwrap();
    assert_eq!(
        c.schedule.map(|s| s.to_string()).as_deref(),
        Some("0 3 * * mon-fri")
    );
    assert_eq!(c.check_jitter, Duration::ZERO);
    // Environment variables set them too, as comma-separated strings.
    let env = |name: &str| match name {
        "LOOKOUT_MAINTENANCE_DAYS" => Some("sat,sun".to_owned()),
        "LOOKOUT_SCHEDULE" => Some("*/15 * * * *".to_owned()),
        _ => None,
    };
    let c = load_str("x.toml", "", &env).unwrap();
    assert_eq!(c.maintenance_days.unwrap().to_string(), "sat,sun");
    assert!(c.schedule.is_some());
}

#[test]
fn bad_schedule_window_and_webhook_keys_are_reported_with_paths() {
    let text = r#"
timezone = "Mars/Olympus"
schedule = "every day"
maintenance_days = "mon-fry"
first_check_at_start = "maybe"

[[webhooks]]
format = "teams"
events = ["updated", "exploded", 3]
timeout = "0s"
colour = "red"

[[services]]
name = "web"
image = "nginx:1.27.0"
compose_file = "/c.yml"
maintenance_days = 5
timezone = "Berlin"
"#;
    let got = problems("x.toml", text);
    let expect = [
        "timezone: \"Mars/Olympus\" is not an IANA time zone",
        "schedule: \"every day\" is not a cron expression",
        "maintenance_days: \"mon-fry\" is not a list of days",
        "first_check_at_start: expected true or false",
        "webhooks[0].url: is required",
        "webhooks[0].format: \"teams\" is not one of generic, slack, discord",
        "webhooks[0].events: \"exploded\" is not one of update_available, update_started, updated, rolled_back, update_failed, all",
        "webhooks[0].events[2]: expected a string, found 3",
        "webhooks[0].timeout: 0s is out of range: use 1s to 5m",
        "webhooks[0].colour: unknown key",
        "services[0].maintenance_days: expected a list of strings, found 5",
        "services[0].timezone: \"Berlin\" is not an IANA time zone",
    ];
    for want in expect {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), expect.len(), "{}", got.join("\n"));
}

/// The valid keys the schema lists for an object (read from its unknown-key message).
fn schema_keys(text: &str, path: &str) -> Vec<String> {
    let Err(ConfigError::Invalid { problems, .. }) = load_str("keys.toml", text, &no_env) else {
        panic!("expected an unknown-key problem for {path}");
    };
    let p = problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("{problems:?}"));
    let list = p.message.split("valid keys are ").nth(1).unwrap();
    list.split(", ").map(str::to_owned).collect()
}

/// Every key the schema accepts is documented in the shipped `config/lookout.toml` (so the
/// reference cannot fall behind the schema).
#[test]
fn the_documented_default_covers_every_key_of_the_schema() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lookout.toml"))
            .unwrap();
    let service = "name = \"a\"\nimage = \"nginx\"\ncompose_file = \"/c.yml\"\n";
    let levels = [
        ("zz_unknown = 1\n".to_owned(), "zz_unknown"),
        (
            format!("[[services]]\n{service}zz_unknown = 1\n"),
            "services[0].zz_unknown",
        ),
        (
            format!("[[services]]\n{service}registry_config = {{ zz_unknown = 1 }}\n"),
            "services[0].registry_config.zz_unknown",
        ),
        (
            "[[webhooks]]\nurl = \"http://x\"\nzz_unknown = 1\n".to_owned(),
            "webhooks[0].zz_unknown",
        ),
        (
            "[discovery]\nzz_unknown = 1\n".to_owned(),
            "discovery.zz_unknown",
        ),
        (
            "[[notify]]\nurl = \"ntfy://ntfy.example.org/t\"\nzz_unknown = 1\n".to_owned(),
            "notify[0].zz_unknown",
        ),
    ];
    let services = [
        "ntfy", "gotify", "telegram", "teams", "matrix", "pushover", "slack", "discord", "generic",
        "email", "mqtt",
    ];
    let levels: Vec<(String, &str)> = levels
        .into_iter()
        .chain(services.iter().map(|s| {
            (
                format!("[[notify]]\nservice = \"{s}\"\nzz_unknown = 1\n"),
                "notify[0].zz_unknown",
            )
        }))
        .collect();
    let mut missing = Vec::new();
    for (text, path) in &levels {
        for key in schema_keys(text, path) {
            let documented = doc.match_indices(key.as_str()).any(|(i, _)| {
                let word =
                    |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                !word(doc[..i].chars().next_back()) && !word(doc[i + key.len()..].chars().next())
            });
            if !documented {
                missing.push(format!("{path}: {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from config/lookout.toml: {missing:#?}"
    );
}

/// Each `(text, path)` problem's message, for a configuration given as TOML.
fn problem_at(text: &str, path: &str) -> String {
    let got = problems("x.toml", text);
    got.iter()
        .find(|p| p.starts_with(&format!("{path}: ")))
        .unwrap_or_else(|| panic!("no problem at {path} in\n{}", got.join("\n")))
        .clone()
}

#[test]
fn durations_and_counts_outside_their_range_are_refused_with_the_range() {
    let service = "[[services]]\nname = \"a\"\nimage = \"nginx\"\ncompose_file = \"/c.yml\"\n";
    let cases = [
        (
            "health_timeout = 9223372036854775807".to_owned(),
            "health_timeout",
            "health_timeout: 9223372036854775807s is out of range: use 1s to 6h",
        ),
        (
            "health_timeout = \"0s\"".to_owned(),
            "health_timeout",
            "health_timeout: 0s is out of range: use 1s to 6h",
        ),
        (
            "check_interval = 5".to_owned(),
            "check_interval",
            "check_interval: 5s is out of range: use 10s to 30d (checks every few seconds",
        ),
        (
            "check_interval = \"31d\"".to_owned(),
            "check_interval",
            "check_interval: 31d is out of range: use 10s to 30d",
        ),
        (
            "compose_timeout = \"2h\"".to_owned(),
            "compose_timeout",
            "compose_timeout: 2h is out of range: use 1s to 1h",
        ),
        (
            "health_stable = \"2h\"".to_owned(),
            "health_stable",
            "health_stable: 2h is out of range: use 0s to 1h",
        ),
        (
            "check_jitter = \"2d\"".to_owned(),
            "check_jitter",
            "check_jitter: 2d is out of range: use 0s to 1d",
        ),
        (
            "state_backups = 100000".to_owned(),
            "state_backups",
            "state_backups: 100000 is out of range: use 0 to 1000",
        ),
        (
            "update_concurrency = 0".to_owned(),
            "update_concurrency",
            "update_concurrency: 0 is out of range: use 1 to 64",
        ),
        (
            "metrics_port = 70000".to_owned(),
            "metrics_port",
            "metrics_port: 70000 is out of range: use 1 to 65535",
        ),
        (
            "[[webhooks]]\nurl = \"https://example.com/h\"\ntimeout = \"1h\"".to_owned(),
            "webhooks[0].timeout",
            "webhooks[0].timeout: 1h is out of range: use 1s to 5m",
        ),
        (
            format!("{service}health_timeout = \"100000w\""),
            "services[0].health_timeout",
            "services[0].health_timeout: 700000d is out of range: use 1s to 6h",
        ),
        (
            format!("{service}health_timeout = \"30s\"\nhealth_stable = \"1m\""),
            "services[0]",
            "services[0]: health_stable (1m) is longer than health_timeout (30s)",
        ),
        (
            "check_interval = \"99999999999999999999999s\"".to_owned(),
            "check_interval",
            "check_interval: \"99999999999999999999999s\" is not a duration",
        ),
    ];
    for (text, path, want) in cases {
        let got = problem_at(&text, path);
        assert!(got.starts_with(want), "{text:?}:\n got {got}\nwant {want}");
    }
    // The largest JSON number, and the same through an environment variable.
    let got = problems("c.json", r#"{"health_timeout": 18446744073709551615}"#);
    assert_eq!(
        got,
        ["health_timeout: 18446744073709551615s is out of range: use 1s to 6h"]
    );
    let env = |n: &str| (n == "HEALTH_TIMEOUT").then(|| "18446744073709551615".to_owned());
    let Err(ConfigError::Invalid { problems, .. }) = load_str("x.toml", "", &env) else {
        panic!("expected problems");
    };
    assert_eq!(
        problems[0].to_string(),
        "health_timeout (from environment variable HEALTH_TIMEOUT): 18446744073709551615s is out of range: use 1s to 6h"
    );
    // The ends of each range are valid.
    let text = "check_interval = \"30d\"\nhealth_timeout = \"6h\"\nhealth_stable = \"1h\"\ncompose_timeout = \"1h\"\ncheck_jitter = \"1d\"\nstate_backups = 1000\n";
    let c = load_str("x.toml", text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.health_timeout, Duration::from_secs(6 * 3600));
    let text = "check_interval = 10\nhealth_timeout = 1\nhealth_stable = 0\ncompose_timeout = 1\ncheck_jitter = 0\nstate_backups = 0\n";
    load_str("x.toml", text, &no_env).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn listening_beyond_loopback_needs_a_token_or_an_explicit_yes() {
    const TOKEN: &str = "api_token = \"0123456789abcdef0123\"\n";
    for addr in [
        "0.0.0.0:9100",
        "[::]:9100",
        "192.168.1.5:9100",
        "[2001:db8::1]:80",
    ] {
        let text = format!("listen = \"{addr}\"\n");
        let got = problem_at(&text, "listen");
        for part in [
            "is reachable from other hosts and no api_token is set",
            "Set api_token = \"${LOOKOUT_API_TOKEN}\"",
            "listen_without_token = true",
            "LOOKOUT_LISTEN_WITHOUT_TOKEN=true",
        ] {
            assert!(got.contains(part), "{addr}: {got}");
        }
        load_str("x.toml", &format!("{text}{TOKEN}"), &no_env)
            .unwrap_or_else(|e| panic!("{addr} with a token: {e}"));
        load_str(
            "x.toml",
            &format!("{text}listen_without_token = true\n"),
            &no_env,
        )
        .unwrap_or_else(|e| panic!("{addr} allowed knowingly: {e}"));
        let env = |n: &str| (n == "LOOKOUT_LISTEN_WITHOUT_TOKEN").then(|| "true".to_owned());
        load_str("x.toml", &text, &env)
            .unwrap_or_else(|e| panic!("{addr} allowed through the environment: {e}"));
    }
    for addr in [
        "127.0.0.1:9100",
        "127.0.0.2:1",
        "[::1]:9100",
        "[::ffff:127.0.0.1]:9100",
    ] {
        let text = format!("listen = \"{addr}\"\nmetrics_port = 9200\n");
        let c = load_str("x.toml", &text, &no_env).unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_eq!(c.listen.port(), 9200);
    }
    // A token that is an unset variable is no token, and the message says why.
    let got = problem_at(
        "listen = \"0.0.0.0:1\"\napi_token = \"${NOT_SET}\"\n",
        "listen",
    );
    assert!(
        got.contains("api_token is empty (is the environment variable it names set?)"),
        "{got}"
    );
    // Through the environment, the problem names the variable.
    let env = |n: &str| (n == "LOOKOUT_LISTEN").then(|| "0.0.0.0:9100".to_owned());
    let Err(ConfigError::Invalid { problems, .. }) = load_str("x.toml", "", &env) else {
        panic!("expected problems");
    };
    assert!(
        problems[0].to_string().starts_with(
            "listen (from environment variable LOOKOUT_LISTEN): 0.0.0.0:9100 is reachable"
        ),
        "{problems:?}"
    );
}

/// A configuration with a mistake next to (or inside) each kind of secret: no message shows one.
#[test]
fn no_mistake_shows_a_secret() {
    const SECRETS: &[&str] = &[
        "hunter2-registry-pass",
        "tok-0123456789abcdef",
        "hook-0123456789abcdef",
        "T0AAA/B0BBB/slacktoken123",
        "webhook-signing-secret",
        "AKIASECRETKEYVALUE",
        "pa:ss@word",
        "discordtoken987",
    ];
    let service = "[[services]]\nname = \"a\"\nimage = \"nginx\"\ncompose_file = \"/c.yml\"\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "x.toml",
            "[[services]]\nname = \"a\"\nregistry_config = { password = \"hunter2-registry-pass\n"
                .to_owned(),
        ),
        ("x.toml", "api_token = \"tok-0123456789abcdef\" x\n".to_owned()),
        ("x.toml", "hook_secret = hook-0123456789abcdef\n".to_owned()),
        (
            "x.toml",
            "api_token = \"tok-0123456789abcdef\"\napi_token = \"tok-0123456789abcdef\"\n"
                .to_owned(),
        ),
        ("x.json", "{\"api_token\": \"tok-0123456789abcdef\",,}".to_owned()),
        ("x.json", "{\"api_token\": \"tok-0123456789abcdef}".to_owned()),
        (
            "x.toml",
            format!("{service}registry_config = {{ username = \"u\", password = \"hunter2-registry-pass${{oops\" }}\n"),
        ),
        (
            "x.toml",
            format!("{service}registry_config = {{ username = \"u\", password = \"hunter2-registry-pass${{not a name}}\" }}\n"),
        ),
        (
            "x.toml",
            "api_token = \"tok-0123456789abcdef${\"\nhook_secret = \"${hook-0123456789abcdef}\"\n".to_owned(),
        ),
        (
            "x.toml",
            "webhook_url = \"https://hooks.slack.com/services/T0AAA/B0BBB/slacktoken123 \"\n"
                .to_owned(),
        ),
        (
            "x.toml",
            "webhook_url = \"hooks.slack.com/services/T0AAA/B0BBB/slacktoken123\"\n".to_owned(),
        ),
        (
            "x.toml",
            "[[webhooks]]\nurl = \"ftp://user:pa:ss@word@example.com/discordtoken987\"\nsecret = \"webhook-signing-secret\"\nformat = \"teams\"\n".to_owned(),
        ),
        (
            "x.toml",
            "[[webhooks]]\nurl = \"https://discord.com/api/webhooks/1/discordtoken987\"\nsecret = 12\nevents = [\"x\"]\n".to_owned(),
        ),
        // A secret pasted into the wrong field too: the values read as secrets are masked anywhere.
        (
            "x.toml",
            "[[webhooks]]\nurl = \"https://discord.com/api/webhooks/1/discordtoken987\"\nsecret = \"webhook-signing-secret\"\nevents = [\"webhook-signing-secret\"]\n".to_owned(),
        ),
        (
            "x.toml",
            format!("{service}probe_url = \"gopher://user:pa:ss@word@127.0.0.1/x\"\n"),
        ),
        (
            "x.toml",
            format!("{service}registry_config = {{ aws_secret_access_key = \"AKIASECRETKEYVALUE\" }}\n"),
        ),
        (
            "x.toml",
            format!("{service}registry_config = {{ endpoint_url = \"https://user:hunter2-registry-pass@ecr\", passwrd = \"hunter2-registry-pass\" }}\n"),
        ),
        (
            "x.json",
            "{\"services\": {\"name\": \"a\", \"registry_config\": {\"password\": \"hunter2-registry-pass\"}}}".to_owned(),
        ),
        (
            "x.json",
            "{\"services\": [{\"name\": \"a\", \"registry_config\": \"hunter2-registry-pass\"}]}".to_owned(),
        ),
        ("x.toml", "api_token = [\"tok-0123456789abcdef\"]\n".to_owned()),
        (
            "x.toml",
            "[[webhooks]]\nurl = \"https://hooks.slack.com/services/T0AAA/B0BBB/slacktoken123\"\nsecret = \"${SECRET_VAR\"\n".to_owned(),
        ),
    ];
    for (name, text) in &cases {
        let message = match load_str(name, text, &no_env) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("{text:?} validates: {c:?}"),
        };
        for secret in SECRETS {
            assert!(
                !message.contains(secret),
                "{text:?} shows {secret:?}:\n{message}"
            );
        }
        // The message still says where.
        assert!(
            message.contains("line ") || message.contains(": "),
            "{message}"
        );
    }
    // A valid configuration's Debug shows neither secrets nor webhook URLs' tokens.
    let text = "api_token = \"tok-0123456789abcdef\"\nwebhook_url = \"https://hooks.slack.com/services/T0AAA/B0BBB/slacktoken123\"\n[[webhooks]]\nurl = \"https://discord.com/api/webhooks/1/discordtoken987\"\nsecret = \"webhook-signing-secret\"\n";
    let c = load_str("x.toml", text, &no_env).unwrap();
    let debug = format!("{c:?}");
    for secret in SECRETS {
        assert!(!debug.contains(secret), "Debug shows {secret:?}: {debug}");
    }
}

#[test]
fn syntax_errors_give_line_and_column_but_not_the_line() {
    let text = "check_interval = \"1h\"\n[[services]]\npassword = \"hunter2-registry-pass\n";
    let e = load_str("x.toml", text, &no_env).unwrap_err().to_string();
    assert!(
        e.starts_with("configuration file x.toml is not valid TOML: line 3, column "),
        "{e}"
    );
    assert!(!e.contains("hunter2") && !e.contains('|'), "{e}");
}

#[test]
fn services_inherit_the_windows_they_do_not_set() {
    let text = r#"
maintenance_window = "02:00-04:00"
maintenance_days = "mon-fri"
timezone = "Europe/Berlin"
[[services]]
name = "a"
image = "nginx:1"
compose_file = "/c.yml"
[[services]]
name = "b"
image = "nginx:1"
compose_file = "/c.yml"
maintenance_window = "10:00-11:00"
timezone = "UTC"
"#;
    let config = from_text(Path::new("x.toml"), text, &|_| None).unwrap();
    let local = TimeZone::UTC;
    let check = |i: usize, want: (&str, &str, &str)| {
        let w = crate::schedule::Windows::for_service(&config, &config.services[i], &local);
        let ranges: Vec<String> = w
            .ranges
            .iter()
            .map(|r| format!("{}-{}", r.start_minute, r.end_minute))
            .collect();
        let got = (
            ranges.join(","),
            w.days.map(|d| d.to_string()).unwrap_or_default(),
            w.tz.iana_name().unwrap_or_default().to_owned(),
        );
        assert_eq!(
            (got.0.as_str(), got.1.as_str(), got.2.as_str()),
            want,
            "services[{i}]"
        );
    };
    check(0, ("120-240", "mon,tue,wed,thu,fri", "Europe/Berlin"));
    check(1, ("600-660", "mon,tue,wed,thu,fri", "UTC"));
}

#[test]
fn notify_channels_read_from_urls_fields_and_watchtower_variable() {
    let text = r#"
[[webhooks]]
url = "https://example.com/hook"

[[notify]]
url = "ntfy://:tk_abcdefgh1234@ntfy.example.org/alerts"
events = ["rolled_back", "update_failed"]
priority = { rolled_back = "high", update_failed = 5 }
tags = { update_failed = ["x"] }

[[notify]]
service = "ntfy"
topic_url = "https://ntfy.example.org/sub/other"
username = "bob"
password = "${NTFY_PASSWORD}"
mode = "summary"
summary_wait = "2m"

[[notify]]
name = "ops-chat"
service = "telegram"
bot_token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
chats = ["@ops", "-100123:7"]
api_url = "http://127.0.0.1:8081"
timeout = "5s"
"#;
    let env = |name: &str| match name {
        "NTFY_PASSWORD" => Some("hunter2-hunter2".to_owned()),
        "WATCHTOWER_NOTIFICATION_URL" => Some(
            "gotify://gotify.example.com/AzyoeNS.D4iJLVa  discord://token@693853386302554172"
                .to_owned(),
        ),
        _ => None,
    };
    let c = load_str("n.toml", text, &env).unwrap();
    assert_eq!(c.webhooks.len(), 1, "[[webhooks]] keep working");
    let names: Vec<&str> = c.notify.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["ntfy", "ntfy-2", "ops-chat", "gotify", "discord"]);
    let first = &c.notify[0];
    assert_eq!(
        first.events,
        Some(vec![EventKind::RolledBack, EventKind::UpdateFailed])
    );
    let Service::Ntfy(n) = &first.service else {
        panic!("{first:?}")
    };
    assert_eq!(
        n.priorities,
        [(EventKind::RolledBack, 4), (EventKind::UpdateFailed, 5)]
    );
    assert_eq!(
        n.tags_by_event,
        [(EventKind::UpdateFailed, vec!["x".to_owned()])]
    );
    let Service::Ntfy(n) = &c.notify[1].service else {
        panic!()
    };
    assert_eq!(
        (n.server.as_str(), n.topic.as_str()),
        ("https://ntfy.example.org/sub", "other")
    );
    assert!(
        matches!(&n.auth, Some(crate::telemetry::channels::ntfy::Auth::Basic { user, password }) if user == "bob" && password.expose() == "hunter2-hunter2")
    );
    assert_eq!(
        c.notify[1].mode,
        NotifyMode::Summary {
            wait: Duration::from_secs(120)
        }
    );
    let Service::Telegram(t) = &c.notify[2].service else {
        panic!()
    };
    assert_eq!(
        (t.api.as_str(), t.chats.len()),
        ("http://127.0.0.1:8081", 2)
    );
    assert_eq!(c.notify[2].timeout, Duration::from_secs(5));
}

#[test]
fn bad_notify_entries_are_reported_with_paths_and_without_secrets() {
    let text = r#"
[[notify]]
url = "ntfy://:tk_secret_value_1@ntfy.example.org/alerts?colour=red"

[[notify]]
url = "smtp://bob:mail-password-1@mail.example.com:587/?from=a@example.com&to=b@example.com&auth=CRAMMD5"

[[notify]]
service = "carrier-pigeon"

[[notify]]
url = "gotify://h/AzyoeNS.D4iJLVa"
service = "gotify"

[[notify]]
service = "gotify"
server = "https://gotify.example.com"
token = "gotify-token-secret"
topic_url = "https://x/y"
api_url = "http://127.0.0.1:1"

[[notify]]
name = "a b"
url = "discord://token@1"
mode = "digest"
summary_wait = "2h"

[[notify]]
name = "dup"
url = "discord://token@2"

[[notify]]
name = "dup"
url = "discord://token@3"

[[notify]]
service = "mqtt"

[[notify]]
events = ["updated"]

[[notify]]
url = "discord://token@4"
title_template = "{{ service "
body_template = "{{ nope }}"
"#;
    let env = |name: &str| {
        (name == "WATCHTOWER_NOTIFICATION_URL")
            .then(|| "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram".to_owned())
    };
    let Err(ConfigError::Invalid { problems, .. }) = load_str("n.toml", text, &env) else {
        panic!("expected problems")
    };
    let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expect = [
        "notify[0].url: ntfy: lookout does not support the parameter(s) \"colour\"",
        "notify[1].url: smtp: auth CRAMMD5 is not supported by lookout",
        "notify[2].service: \"carrier-pigeon\" is not one of ntfy, gotify",
        "notify[3].service: give either url (a shoutrrr URL) or service with its fields, not both",
        "notify[4].api_url: applies to telegram and pushover only, not gotify",
        "notify[4].topic_url: unknown key",
        "notify[5].name: \"a b\" is not a channel name",
        "notify[5].mode: \"digest\" is not one of event, summary",
        "notify[5].summary_wait: 2h is out of range: use 1s to 1h",
        "notify[7].name: \"dup\" is already the name of notify[6]",
        "notify[8].host: is required for service \"mqtt\"",
        "notify[9]: give url (a shoutrrr URL: ntfy://, telegram://, …) or service",
        "notify[10].title_template: title_template is not a valid template",
        "notify[10].body_template: body_template fails for a update_available message",
        "WATCHTOWER_NOTIFICATION_URL (URL 1 of 1): telegram: names no chat",
    ];
    for want in expect {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), expect.len(), "{}", got.join("\n"));
    let all = got.join("\n");
    for secret in [
        "tk_secret_value_1",
        "mail-password-1",
        "AzyoeNS.D4iJLVa",
        "gotify-token-secret",
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    ] {
        assert!(!all.contains(secret), "{secret} in\n{all}");
    }
}

/// A service's settings stay small: 10,000 of them are held while a check runs, and a
/// `lookout check` of that many must stay within 40 MB. The policy and the registry settings
/// are shared (`Arc`), so they count a pointer each.
#[test]
fn a_service_spec_stays_small() {
    let size = std::mem::size_of::<ServiceSpec>();
    assert!(size <= 480, "ServiceSpec grew to {size} bytes");
}

#[test]
fn services_with_one_policy_share_its_compiled_form_and_the_empty_registry_settings() {
    let text = r#"
[[services]]
name = "a"
image = "nginx:1.27"
compose_file = "/srv/a.yml"
policy = "semver"

[[services]]
name = "b"
image = "nginx:1.27"
compose_file = "/srv/b.yml"
policy = "semver"

[[services]]
name = "c"
image = "nginx:1.27"
compose_file = "/srv/c.yml"
policy = "semver"
update_level = "minor"
"#;
    let c = from_text(Path::new("lookout.toml"), text, &|_| None).unwrap();
    let [a, b, third] = &c.services[..] else {
        panic!("three services")
    };
    assert!(std::sync::Arc::ptr_eq(&a.policy, &b.policy));
    assert!(!std::sync::Arc::ptr_eq(&a.policy, &third.policy));
    assert!(std::sync::Arc::ptr_eq(&a.registry, &b.registry));
}

#[test]
fn swarm_discovery_is_auto_unless_turned_on_or_off() {
    let mode = |text: &str| load_str("l.toml", text, &no_env).unwrap().swarm;
    assert_eq!(mode(""), SwarmMode::Auto);
    assert_eq!(mode("[swarm]\n"), SwarmMode::Auto);
    assert_eq!(mode("[swarm]\nenabled = \"auto\"\n"), SwarmMode::Auto);
    assert_eq!(mode("[swarm]\nenabled = true\n"), SwarmMode::On);
    assert_eq!(mode("[swarm]\nenabled = false\n"), SwarmMode::Off);
}

#[test]
fn a_stack_file_is_checked_at_load_and_its_errors_name_the_file_and_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack.yml");
    std::fs::write(&stack, "services:\n  web:\n    image: app:1.0.0\n").unwrap();
    let config = |swarm: &str, file: &Path| {
        let path = dir.path().join("lookout.toml");
        std::fs::write(
            &path,
            format!(
                "[[services]]\nname = \"web\"\nimage = \"app:1.0.0\"\nswarm_service = \"{swarm}\"\n\
                 stack_file = \"{}\"\n",
                file.display()
            ),
        )
        .unwrap();
        load(&path)
    };
    let ok = config("shop_web", &stack).unwrap();
    assert_eq!(ok.services[0].stack_file.as_deref(), Some(stack.as_path()));
    for (swarm, file, want) in [
        (
            "shop_db",
            stack.clone(),
            "defines no service that Swarm service \"shop_db\"",
        ),
        ("shop_web", dir.path().join("gone.yml"), "gone.yml"),
        ("shop_web", dir.path().to_path_buf(), "not a regular file"),
    ] {
        let e = config(swarm, &file).unwrap_err().to_string();
        assert!(
            e.contains("services[0].stack_file") && e.contains(want),
            "{swarm} {}: {e}",
            file.display()
        );
    }
    let e = problems(
        "l.toml",
        "[[services]]\nname = \"web\"\nimage = \"app:1\"\ncompose_file = \"/c.yml\"\nstack_file = \"/s.yml\"\n",
    );
    assert!(
        e.iter()
            .any(|p| p.contains("services[0].stack_file") && p.contains("set swarm_service too")),
        "{e:?}"
    );
}
