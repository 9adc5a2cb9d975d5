//! The `[[notify]]` channels and Watchtower's `WATCHTOWER_NOTIFICATION_URL`.
//!
//! An entry is either `url = "…"` in shoutrrr's syntax or `service = "…"` with that service's
//! fields; `events`, `mode` (`event` or `summary`), `summary_wait`, `timeout` and `name` apply
//! to both. Every credential read (the URL's tokens, `token`, `password`, …) is a secret: never
//! quoted in a message, masked wherever it would appear. A channel lookout cannot deliver to
//! (a Matrix URL without rooms) is refused here, naming it, so that none stays silent.

use std::time::Duration;

use serde_json::Value;

use super::fields::Obj;
use super::{DEFAULT_WEBHOOK_TIMEOUT, limits, string_list};
use crate::telemetry::EventKind;
use crate::telemetry::channels::shoutrrr::{self, Parsed};
use crate::telemetry::channels::slack::{Flavor, SlackHook};
use crate::telemetry::channels::template::Templates;
use crate::telemetry::channels::{
    NotifyMode, NotifySpec, Service, TlsTrust, discord, email, generic, gotify, matrix, ntfy,
    pushover, teams, telegram,
};

/// Watchtower's variable: several shoutrrr URLs separated by spaces.
pub const WATCHTOWER_URLS: &str = "WATCHTOWER_NOTIFICATION_URL";

/// How long a summary waits for more events unless `summary_wait` says otherwise.
pub(crate) const DEFAULT_SUMMARY_WAIT: Duration = Duration::from_secs(60);

/// The services a `service = "…"` entry can name.
const SERVICES: &[&str] = &[
    "ntfy",
    "gotify",
    "telegram",
    "teams",
    "matrix",
    "pushover",
    "slack",
    "mattermost",
    "rocketchat",
    "discord",
    "generic",
    "email",
    "mqtt",
];

/// Every `[[notify]]` entry that reads cleanly, then one per URL in
/// `WATCHTOWER_NOTIFICATION_URL`, with unique names.
pub(super) fn read_notify(top: &mut Obj<'_, '_>) -> Vec<NotifySpec> {
    let ctx = top.ctx;
    let mut out: Vec<(String, NotifySpec)> = Vec::new();
    for obj in top.objects("notify") {
        let path = obj.path.clone();
        if let Some(spec) = read_entry(obj) {
            out.push((path, spec));
        }
    }
    if let Some(list) = (ctx.env)(WATCHTOWER_URLS).filter(|v| !v.trim().is_empty()) {
        ctx.secret_value(&list);
        let urls = shoutrrr::split_list(&list);
        let n = urls.len();
        for (i, url) in urls.into_iter().enumerate() {
            let path = format!("{WATCHTOWER_URLS} (URL {} of {n})", i + 1);
            if let Some(service) = from_url(ctx, &path, url) {
                out.push((
                    path,
                    NotifySpec {
                        name: String::new(),
                        service,
                        events: None,
                        mode: NotifyMode::Event,
                        timeout: DEFAULT_WEBHOOK_TIMEOUT,
                        templates: Templates::default(),
                    },
                ));
            }
        }
    }
    let mut taken: Vec<String> = out
        .iter()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(_, s)| s.name.clone())
        .collect();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (path, spec) in &mut out {
        if spec.name.is_empty() {
            let base = spec.service.name();
            let mut name = base.to_owned();
            let mut n = 2;
            while taken.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            taken.push(name.clone());
            spec.name = name;
        } else if let Some((_, first)) = seen.iter().find(|(n, _)| *n == spec.name) {
            ctx.problem(
                format!("{path}.name"),
                format!(
                    "{:?} is already the name of {first}; names must be unique",
                    spec.name
                ),
            );
        }
        seen.push((spec.name.clone(), path.clone()));
    }
    out.into_iter().map(|(_, s)| s).collect()
}

/// The service of a shoutrrr URL, its credentials marked secret; a problem at `path` when it
/// cannot be read or delivered.
fn from_url(ctx: &super::fields::Ctx<'_>, path: &str, url: &str) -> Option<Service> {
    ctx.secret_value(url);
    match shoutrrr::parse(url) {
        Ok(Parsed { service, secrets }) => {
            for s in &secrets {
                ctx.secret_value(s);
            }
            if let Some(why) = service.undeliverable() {
                ctx.problem(path, format!("{}: {why}", service.name()));
                return None;
            }
            Some(service)
        }
        Err(e) => {
            ctx.problem(path, e.to_string());
            None
        }
    }
}

fn read_entry(mut o: Obj<'_, '_>) -> Option<NotifySpec> {
    let name = o.string("name").and_then(|n| {
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            o.ctx.problem(
                o.at("name"),
                format!(
                    "{n:?} is not a channel name: use 1 to 64 letters, digits, '_', '.' or '-'"
                ),
            );
        }
        ok.then_some(n)
    });
    let events = events(&mut o);
    let mode = o.string("mode");
    let wait = o
        .duration_in("summary_wait", limits::SUMMARY_WAIT, "")
        .unwrap_or(DEFAULT_SUMMARY_WAIT);
    let mode = match mode.as_deref().map(str::trim) {
        None | Some("event" | "events") => NotifyMode::Event,
        Some("summary") => NotifyMode::Summary { wait },
        Some(other) => {
            o.ctx.problem(
                o.at("mode"),
                format!("{other:?} is not one of event, summary"),
            );
            NotifyMode::Event
        }
    };
    let timeout = o
        .duration_in("timeout", limits::WEBHOOK_TIMEOUT, "")
        .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
    let templates = Templates {
        title: template(&mut o, "title_template"),
        body: template(&mut o, "body_template"),
    };
    let url_present = o.get("url").is_some();
    let url = o.secret("url");
    let service_name = o.string("service");
    let api_url = o.url("api_url", false);
    let service = match (url, service_name) {
        (Some(_), Some(_)) => {
            o.ctx.problem(
                o.at("service"),
                "give either url (a shoutrrr URL) or service with its fields, not both",
            );
            None
        }
        (Some(url), None) => from_url(o.ctx, &o.at("url"), url.expose()),
        (None, Some(service)) => by_fields(&mut o, service.trim()),
        (None, None) => {
            if !url_present {
                o.ctx.problem(
                    o.path.clone(),
                    format!(
                        "give url (a shoutrrr URL: ntfy://, telegram://, …) or service (one of {})",
                        SERVICES.join(", ")
                    ),
                );
            }
            None
        }
    };
    let service = service.map(|s| with_api(s, api_url, &o));
    let service = service.map(|s| with_tls(s, &mut o));
    // Priority and tags by event (ntfy), read after the service so the keys are known.
    let service = match service {
        Some(Service::Ntfy(mut n)) => {
            ntfy_by_event(&mut o, &mut n);
            Some(Service::Ntfy(n))
        }
        other => other,
    };
    o.finish();
    Some(NotifySpec {
        name: name.unwrap_or_default(),
        service: service?,
        events,
        mode,
        timeout,
        templates,
    })
}

/// `tls_ca_file` and `tls_skip_verify` (email, MQTT), and MQTT's `install`, `discovery` and
/// `discovery_prefix`, whether the entry is a URL or fields.
fn with_tls(service: Service, o: &mut Obj<'_, '_>) -> Service {
    let ca_file = o.string("tls_ca_file").map(std::path::PathBuf::from);
    let skip_verify = o.bool("tls_skip_verify").unwrap_or(false);
    let trust = TlsTrust {
        ca_file,
        skip_verify,
    };
    if let Some(path) = &trust.ca_file {
        if !path.is_absolute() {
            o.ctx.problem(
                o.at("tls_ca_file"),
                format!("{} is not an absolute path", path.display()),
            );
        }
    }
    match service {
        Service::Email(mut e) => {
            e.tls = trust;
            Service::Email(e)
        }
        Service::Mqtt(mut m) => {
            m.trust = trust;
            if let Some(install) = o.bool("install") {
                m.install = install;
            }
            if let Some(discovery) = o.bool("discovery") {
                m.discovery = discovery;
            }
            if let Some(prefix) = o.string("discovery_prefix") {
                if prefix.is_empty() || prefix.contains(['+', '#']) {
                    o.ctx.problem(
                        o.at("discovery_prefix"),
                        format!("{prefix:?} is not a topic prefix (no +, # or empty)"),
                    );
                } else {
                    m.discovery_prefix = prefix;
                }
            }
            Service::Mqtt(m)
        }
        other => {
            if trust != TlsTrust::default() {
                o.ctx.problem(
                    o.at(if trust.skip_verify {
                        "tls_skip_verify"
                    } else {
                        "tls_ca_file"
                    }),
                    format!("applies to email and mqtt only, not {}", other.name()),
                );
            }
            other
        }
    }
}

/// A template setting, checked against every kind of message.
fn template(o: &mut Obj<'_, '_>, key: &'static str) -> Option<String> {
    let source = o.string(key)?;
    match Templates::check(&source, key) {
        Ok(()) => Some(source),
        Err(e) => {
            o.ctx.problem(o.at(key), e);
            None
        }
    }
}

/// `api_url` replaces the Bot API (Telegram) or Pushover's API address: a self-hosted Bot API
/// server, a proxy.
fn with_api(service: Service, api_url: Option<String>, o: &Obj<'_, '_>) -> Service {
    let Some(api) = api_url else {
        return service;
    };
    match service {
        Service::Telegram(mut t) => {
            t.api = api;
            Service::Telegram(t)
        }
        Service::Pushover(mut p) => {
            p.api = api;
            Service::Pushover(p)
        }
        other => {
            o.ctx.problem(
                o.at("api_url"),
                format!(
                    "applies to telegram and pushover only, not {}",
                    other.name()
                ),
            );
            other
        }
    }
}

/// `events = [...]`: the event kinds an entry wants; `None` (every kind) when absent or when it
/// holds `all` or `*`. Shared by `[[webhooks]]` and `[[notify]]`.
pub(super) fn events(o: &mut Obj<'_, '_>) -> Option<Vec<EventKind>> {
    string_list(o, "events").and_then(|names| {
        if names.iter().any(|n| n == "all" || n == "*") {
            return None;
        }
        let mut kinds = Vec::new();
        for name in names {
            match EventKind::parse(&name) {
                Some(k) => kinds.push(k),
                None => o.ctx.problem(
                    o.at("events"),
                    format!(
                        "{name:?} is not one of {}, all",
                        EventKind::NAMES.join(", ")
                    ),
                ),
            }
        }
        Some(kinds)
    })
}

/// A required key: a problem when it is missing.
fn required<T>(o: &Obj<'_, '_>, key: &str, value: Option<T>, service: &str) -> Option<T> {
    if value.is_none() {
        o.ctx
            .problem(o.at(key), format!("is required for service {service:?}"));
    }
    value
}

/// `service = "…"` and that service's fields.
fn by_fields(o: &mut Obj<'_, '_>, service: &str) -> Option<Service> {
    match service {
        "ntfy" => {
            let topic_url = o.url("topic_url", true);
            let token = o.secret("token");
            let username = o.string("username");
            let password = o.secret("password");
            let topic_url = required(o, "topic_url", topic_url, service)?;
            let parsed = url::Url::parse(&topic_url).ok()?;
            let segments: Vec<&str> = parsed
                .path_segments()
                .map(|s| s.filter(|p| !p.is_empty()).collect())
                .unwrap_or_default();
            let Some((topic, path)) = segments.split_last() else {
                o.ctx.problem(
                    o.at("topic_url"),
                    "names no topic: write https://ntfy.example.org/TOPIC",
                );
                return None;
            };
            let mut server = format!(
                "{}://{}",
                parsed.scheme(),
                &parsed[url::Position::BeforeHost..url::Position::AfterPort]
            );
            if !path.is_empty() {
                server = format!("{server}/{}", path.join("/"));
            }
            let auth = match (token, username, password) {
                (Some(t), None, None) => Some(ntfy::Auth::Token(t)),
                (None, Some(user), Some(password)) => Some(ntfy::Auth::Basic { user, password }),
                (None, None, None) => None,
                _ => {
                    o.ctx.problem(
                        o.path.clone(),
                        "give token (an access token), or username and password, not both",
                    );
                    None
                }
            };
            Some(Service::Ntfy(ntfy::Ntfy {
                server,
                topic: (*topic).to_owned(),
                auth,
                priority: None,
                tags: None,
                priorities: Vec::new(),
                tags_by_event: Vec::new(),
                title: None,
                click: None,
                icon: None,
                email: None,
                cache: None,
                firebase: None,
            }))
        }
        "gotify" => {
            let server = o.url("server", false);
            let token = o.secret("token");
            let priority = o.uint_in("priority", 0..=10);
            let server = required(o, "server", server, service);
            let token = required(o, "token", token, service);
            Some(Service::Gotify(gotify::Gotify {
                server: server?,
                token: token?,
                priority: priority.and_then(|p| u8::try_from(p).ok()),
                title: None,
            }))
        }
        "telegram" => {
            let token = o.secret("bot_token");
            let chats = string_list(o, "chats");
            let parse_mode = o.choice("parse_mode", &["markdownv2", "html"], |s| {
                match s.trim().to_ascii_lowercase().as_str() {
                    "markdownv2" | "markdown" => Some(telegram::ParseMode::MarkdownV2),
                    "html" => Some(telegram::ParseMode::Html),
                    _ => None,
                }
            });
            let token = required(o, "bot_token", token, service)?;
            if !telegram::valid_token(token.expose()) {
                o.ctx.problem(
                    o.at("bot_token"),
                    "is not a bot token of the form 123456:ABC-DEF… (as BotFather gives it)",
                );
                return None;
            }
            let chats = required(o, "chats", chats, service)?;
            let mut list = Vec::new();
            for c in &chats {
                match telegram::parse_chat(c) {
                    Some(chat) => list.push(chat),
                    None => o.ctx.problem(
                        o.at("chats"),
                        format!("{c:?} is not a chat: write a chat id (-1001234567890), @channel, or either with :THREAD_ID"),
                    ),
                }
            }
            if list.is_empty() {
                return None;
            }
            Some(Service::Telegram(telegram::Telegram {
                api: telegram::API.to_owned(),
                token,
                chats: list,
                parse_mode: parse_mode.unwrap_or(telegram::ParseMode::MarkdownV2),
                notification: true,
                preview: false,
                title: None,
            }))
        }
        "teams" => {
            let url = o.url("webhook_url", true);
            Some(Service::Teams(teams::Teams {
                webhook_url: required(o, "webhook_url", url, service)?,
                title: None,
                color: None,
            }))
        }
        "matrix" => {
            let homeserver = o.url("homeserver", false);
            let token = o.secret("access_token");
            let user = o.string("user");
            let password = o.secret("password");
            let rooms = string_list(o, "rooms");
            let homeserver = required(o, "homeserver", homeserver, service);
            let (token, user) = match (token, user, password) {
                (Some(t), None, None) => (Some(t), None),
                (None, Some(u), Some(p)) => (Some(p), Some(u)),
                (None, None, None) => {
                    o.ctx.problem(
                        o.at("access_token"),
                        "is required for service \"matrix\" (or user and password, to log in)",
                    );
                    (None, None)
                }
                _ => {
                    o.ctx.problem(
                        o.path.clone(),
                        "give access_token, or user and password (a password login), not both",
                    );
                    (None, None)
                }
            };
            let rooms = required(o, "rooms", rooms, service);
            let m = matrix::Matrix {
                homeserver: homeserver?,
                access_token: token?,
                rooms: rooms?,
                user,
                device_id: None,
                title: None,
            };
            if let Some(why) = m.undeliverable() {
                o.ctx.problem(o.at("rooms"), why);
                return None;
            }
            Some(Service::Matrix(m))
        }
        "pushover" => {
            let token = o.secret("token");
            let user = o.secret("user");
            let devices = string_list(o, "devices");
            let priority = match o.get("priority") {
                None => None,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .and_then(|n| i8::try_from(n).ok())
                    .filter(|n| (-2..=2).contains(n))
                    .or_else(|| {
                        o.ctx.problem(
                            o.at("priority"),
                            format!("{n} is out of range: use -2 to 2"),
                        );
                        None
                    }),
                Some(_) => o.string("priority").and_then(|s| {
                    pushover::parse_priority(&s).or_else(|| {
                        o.ctx.problem(
                            o.at("priority"),
                            format!("{s:?} is not a priority: use -2 to 2"),
                        );
                        None
                    })
                }),
            };
            let token = required(o, "token", token, service);
            let user = required(o, "user", user, service);
            Some(Service::Pushover(pushover::Pushover {
                api: pushover::API.to_owned(),
                token: token?,
                user: user?,
                devices: devices.unwrap_or_default(),
                priority,
                title: None,
            }))
        }
        "slack" | "mattermost" | "rocketchat" => {
            let flavor = match service {
                "slack" => Flavor::Slack,
                "mattermost" => Flavor::Mattermost,
                _ => Flavor::RocketChat,
            };
            let url = o.url("webhook_url", true);
            let channel = o.string("channel");
            let username = o.string("username");
            let mut hook = SlackHook::new(flavor, required(o, "webhook_url", url, service)?);
            hook.channel = channel;
            hook.username = username;
            Some(Service::Slack(hook))
        }
        "discord" => {
            let url = o.url("webhook_url", true);
            let username = o.string("username");
            Some(Service::Discord(discord::Discord {
                webhook_url: required(o, "webhook_url", url, service)?,
                username,
                avatar_url: None,
                color: None,
                title: None,
            }))
        }
        "generic" => {
            let url = o.url("webhook_url", true);
            Some(Service::Generic(generic::Generic::new(required(
                o,
                "webhook_url",
                url,
                service,
            )?)))
        }
        "email" => {
            let host = o.string("host");
            let port = o.uint_in("port", 1..=65535);
            let username = o.string("username");
            let password = o.secret("password");
            let from = o.string("from");
            let from_name = o.string("from_name");
            let to = string_list(o, "to");
            let subject = o.string("subject");
            let encryption = o.string("encryption");
            let starttls = o.bool("starttls");
            let auth = o.string("auth");
            let html = o.bool("html");
            let client_host = o.string("client_host");
            let host = required(o, "host", host, service);
            let from = required(o, "from", from, service);
            let to = required(o, "to", to, service);
            let settings = email::Settings {
                host: host?,
                port: port.and_then(|p| u16::try_from(p).ok()),
                username,
                password,
                from: from?,
                from_name,
                to: to?,
                subject,
                encryption,
                starttls,
                auth,
                html,
                client_host,
            };
            match settings.build() {
                Ok(e) => Some(Service::Email(e)),
                Err(e) => {
                    o.ctx.problem(o.path.clone(), format!("email: {e}"));
                    None
                }
            }
        }
        "mqtt" => {
            let host = o.string("host");
            let port = o.uint_in("port", 1..=65535);
            let tls = o.bool("tls").unwrap_or(false);
            let topic = o.string("topic");
            let client_id = o.string("client_id");
            let username = o.string("username");
            let password = o.secret("password");
            let host = required(o, "host", host, service)?;
            // Read through the URL parser, so both spellings are checked alike.
            let mut url = url::Url::parse(if tls { "mqtts://x" } else { "mqtt://x" }).ok()?;
            if url.set_host(Some(&host)).is_err() {
                o.ctx.problem(
                    o.at("host"),
                    format!("{host:?} is not a host name or address"),
                );
                return None;
            }
            let _ = url.set_port(port.and_then(|p| u16::try_from(p).ok()));
            {
                let mut q = url.query_pairs_mut();
                if let Some(t) = &topic {
                    q.append_pair("topic", t);
                }
                if let Some(c) = &client_id {
                    q.append_pair("clientid", c);
                }
            }
            match shoutrrr::parse(url.as_str()) {
                Ok(Parsed {
                    service: Service::Mqtt(mut m),
                    ..
                }) => {
                    m.username = username;
                    m.password = password;
                    Some(Service::Mqtt(m))
                }
                Ok(_) => None,
                Err(e) => {
                    o.ctx.problem(o.path.clone(), e.to_string());
                    None
                }
            }
        }
        other => {
            o.ctx.problem(
                o.at("service"),
                format!("{other:?} is not one of {}", SERVICES.join(", ")),
            );
            None
        }
    }
}

/// ntfy's `priority` (1-5 or a name, or a table by event) and `tags` (a list, or a table by
/// event).
fn ntfy_by_event(o: &mut Obj<'_, '_>, n: &mut ntfy::Ntfy) {
    let priority_at = o.at("priority");
    match o.get("priority") {
        None => {}
        Some(Value::Object(map)) => {
            for (event, value) in map {
                let Some(kind) = EventKind::parse(event) else {
                    o.ctx.problem(
                        format!("{priority_at}.{event}"),
                        format!("is not one of {}", EventKind::NAMES.join(", ")),
                    );
                    continue;
                };
                match priority_value(value) {
                    Some(p) => n.priorities.push((kind, p)),
                    None => o.ctx.problem(
                        format!("{priority_at}.{event}"),
                        "is not a priority: use 1-5 or min, low, default, high, max",
                    ),
                }
            }
        }
        Some(value) => match priority_value(value) {
            Some(p) => n.priority = Some(p),
            None => o.ctx.problem(
                priority_at,
                "is not a priority: use 1-5 or min, low, default, high, max, or a table by event",
            ),
        },
    }
    let tags_at = o.at("tags");
    match o.get("tags") {
        None => {}
        Some(Value::Object(map)) => {
            for (event, value) in map {
                let Some(kind) = EventKind::parse(event) else {
                    o.ctx.problem(
                        format!("{tags_at}.{event}"),
                        format!("is not one of {}", EventKind::NAMES.join(", ")),
                    );
                    continue;
                };
                match tag_list(value) {
                    Some(t) => n.tags_by_event.push((kind, t)),
                    None => o
                        .ctx
                        .problem(format!("{tags_at}.{event}"), "expected a list of tags"),
                }
            }
        }
        Some(value) => match tag_list(value) {
            Some(t) => n.tags = Some(t),
            None => o
                .ctx
                .problem(tags_at, "expected a list of tags, or a table by event"),
        },
    }
}

fn priority_value(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| (1..=5).contains(n)),
        Value::String(s) => ntfy::parse_priority(s),
        _ => None,
    }
}

fn tag_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(|s| s.trim().to_owned()))
            .collect(),
        Value::String(s) => Some(
            s.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
        _ => None,
    }
}
