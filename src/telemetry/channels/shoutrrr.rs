//! shoutrrr's service URLs (`ntfy://…`, `telegram://…`, what Watchtower's
//! `WATCHTOWER_NOTIFICATION_URL` holds), read into a [`Service`]. Pure.
//!
//! Query keys are case-insensitive, as in shoutrrr. A service or parameter lookout does not
//! support is an error that names it; no setting is silently ignored. Messages never quote a
//! credential: URLs in them pass through [`crate::redact::redact`].

use percent_encoding::percent_decode_str;

use super::Service;

/// A parsed URL and the credentials it holds (to be masked wherever they could appear).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub service: Service,
    pub secrets: Vec<String>,
}

/// Why a URL cannot be used. The message names the service and the parameter, never a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

/// The services lookout reads from shoutrrr URLs, by scheme.
pub(crate) const SCHEMES: &[&str] = &[
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
    "generic+https",
    "generic+http",
    "smtp",
    "mqtt",
    "mqtts",
];

/// shoutrrr services lookout does not have.
const SHOUTRRR_OTHERS: &[&str] = &[
    "bark",
    "discourse",
    "googlechat",
    "hangouts",
    "ifttt",
    "join",
    "lark",
    "logger",
    "opsgenie",
    "pagerduty",
    "pinglet",
    "pushbullet",
    "signal",
    "webex",
    "wecom",
    "xmpp",
    "zulip",
];

/// Several URLs separated by white space, as `WATCHTOWER_NOTIFICATION_URL` holds them.
pub(crate) fn split_list(list: &str) -> Vec<&str> {
    list.split_whitespace().collect()
}

/// Reads one shoutrrr URL.
pub fn parse(url: &str) -> Result<Parsed, UrlError> {
    let url = url.trim();
    let shown = crate::redact::redact(url).into_owned();
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(UrlError(format!(
            "{shown:?} is not a service URL: write SERVICE://…, with SERVICE one of {}",
            SCHEMES.join(", ")
        )));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&scheme.as_str()) {
        let what = if SHOUTRRR_OTHERS.contains(&scheme.as_str()) {
            format!("shoutrrr's {scheme:?} service is not supported by lookout")
        } else {
            format!("{scheme:?} is not a notification service lookout knows")
        };
        return Err(UrlError(format!(
            "{what}; supported: {}",
            SCHEMES.join(", ")
        )));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| UrlError(format!("{shown:?} is not a valid {scheme} URL ({e})")))?;
    let mut parts = Parts::new(&scheme, &parsed);
    let service = match scheme.as_str() {
        "ntfy" => Service::Ntfy(super::ntfy::Ntfy::from_url(&mut parts)?),
        "gotify" => Service::Gotify(super::gotify::Gotify::from_url(&mut parts)?),
        "telegram" => Service::Telegram(super::telegram::Telegram::from_url(&mut parts)?),
        "teams" => Service::Teams(super::teams::Teams::from_url(&mut parts)?),
        "matrix" => Service::Matrix(super::matrix::Matrix::from_url(&mut parts)?),
        "pushover" => Service::Pushover(super::pushover::Pushover::from_url(&mut parts)?),
        "slack" => Service::Slack(super::slack::SlackHook::from_slack_url(&mut parts)?),
        "mattermost" => Service::Slack(super::slack::SlackHook::from_mattermost_url(&mut parts)?),
        "rocketchat" => Service::Slack(super::slack::SlackHook::from_rocketchat_url(&mut parts)?),
        "discord" => Service::Discord(super::discord::Discord::from_url(&mut parts)?),
        "generic" | "generic+https" | "generic+http" => {
            Service::Generic(super::generic::Generic::from_url(&mut parts, url)?)
        }
        "smtp" => Service::Email(super::email::Email::from_url(&mut parts)?),
        _ => Service::Mqtt(super::mqtt::Mqtt::from_url(&mut parts)?),
    };
    let secrets = parts.finish()?;
    Ok(Parsed { service, secrets })
}

/// A URL taken apart, percent-decoded, with its query keys lower-cased; services take what
/// they read and [`Parts::finish`] refuses what is left.
#[derive(Debug)]
pub struct Parts {
    pub service: String,
    pub user: String,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// Path segments, decoded, empty ones left out.
    pub segments: Vec<String>,
    /// `(lower-case key, value)` in order; taken ones are `None`.
    query: Vec<Option<(String, String)>>,
    /// The keys the service reads, for the message about unknown ones.
    valid: Vec<&'static str>,
    secrets: Vec<String>,
    /// Generic endpoints forward unknown keys instead of refusing them.
    pub(crate) forward_rest: bool,
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl Parts {
    fn new(scheme: &str, url: &url::Url) -> Self {
        Self {
            service: scheme.to_owned(),
            user: decode(url.username()),
            password: url.password().map(decode),
            host: decode(url.host_str().unwrap_or("")),
            port: url.port(),
            segments: url
                .path_segments()
                .map(|s| s.filter(|p| !p.is_empty()).map(decode).collect())
                .unwrap_or_default(),
            query: url
                .query_pairs()
                .map(|(k, v)| Some((k.to_ascii_lowercase(), v.into_owned())))
                .collect(),
            valid: Vec::new(),
            secrets: Vec::new(),
            forward_rest: false,
        }
    }

    /// An error about this service's URL.
    pub fn error(&self, message: impl std::fmt::Display) -> UrlError {
        UrlError(format!("{}: {message}", self.service))
    }

    /// Marks `value` as a credential.
    pub fn secret(&mut self, value: &str) {
        if !value.is_empty() {
            self.secrets.push(value.to_owned());
        }
    }

    /// `host` or `host:port`.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The value of the first of `keys` present (aliases), removed from the query.
    pub fn take(&mut self, keys: &[&'static str]) -> Option<String> {
        self.valid.extend_from_slice(keys);
        let mut found = None;
        for slot in &mut self.query {
            if slot
                .as_ref()
                .is_some_and(|(k, _)| keys.contains(&k.as_str()))
            {
                let (_, v) = slot.take()?;
                found.get_or_insert(v);
            }
        }
        found
    }

    /// A secret parameter.
    pub(crate) fn take_secret(&mut self, keys: &[&'static str]) -> Option<String> {
        let v = self.take(keys)?;
        self.secret(&v);
        Some(v)
    }

    /// A yes/no parameter (`yes`, `no`, `true`, `false`, `1`, `0`, `on`, `off`).
    pub(crate) fn take_bool(&mut self, keys: &[&'static str]) -> Result<Option<bool>, UrlError> {
        let Some(v) = self.take(keys) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "on" => Ok(Some(true)),
            "no" | "false" | "0" | "off" => Ok(Some(false)),
            _ => Err(self.error(format!(
                "parameter {:?} is {v:?}; write yes or no",
                keys.first().copied().unwrap_or("")
            ))),
        }
    }

    /// A comma-separated list parameter.
    pub(crate) fn take_list(&mut self, keys: &[&'static str]) -> Option<Vec<String>> {
        self.take(keys).map(|v| {
            v.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
    }

    /// A title parameter: lookout writes its own titles, so one given here is used as a
    /// prefix.
    pub(crate) fn take_title(&mut self) -> Option<String> {
        self.take(&["title"]).filter(|t| !t.trim().is_empty())
    }

    /// The credentials read, or an error naming every parameter nobody read.
    fn finish(self) -> Result<Vec<String>, UrlError> {
        let unknown: Vec<&str> = self
            .query
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        if unknown.is_empty() || self.forward_rest {
            return Ok(self.secrets);
        }
        let mut valid = self.valid.clone();
        valid.sort_unstable();
        valid.dedup();
        let valid = if valid.is_empty() {
            "it takes none".to_owned()
        } else {
            format!("valid parameters are {}", valid.join(", "))
        };
        Err(UrlError(format!(
            "{}: lookout does not support the parameter(s) {}; {valid}",
            self.service,
            unknown
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// `http` when `disable_tls`, else `https`.
pub(crate) fn http_scheme(disable_tls: Option<bool>) -> &'static str {
    if disable_tls == Some(true) {
        "http"
    } else {
        "https"
    }
}
