//! Slack incoming webhooks and the Slack-compatible hooks of Mattermost and Rocket.Chat:
//! `{"text", "username", "channel", "icon_emoji"/"icon_url", "attachments"}` POSTed to the
//! hook URL.

use serde_json::{Value, json};

use super::shoutrrr::{Parts, UrlError, http_scheme};
use super::{Message, Prepared};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Slack,
    Mattermost,
    RocketChat,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Mattermost => "mattermost",
            Self::RocketChat => "rocketchat",
        }
    }
}

#[derive(Clone)]
pub struct SlackHook {
    pub flavor: Flavor,
    /// The whole hook URL (its path is the credential).
    pub webhook_url: String,
    pub username: Option<String>,
    pub channel: Option<String>,
    pub icon_emoji: Option<String>,
    pub icon_url: Option<String>,
    /// The attachment's colour; `None`: by event.
    pub color: Option<String>,
    pub title: Option<String>,
    pub thread_ts: Option<String>,
}

impl std::fmt::Debug for SlackHook {
    /// The URL as scheme and host only: its path is the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackHook")
            .field("webhook_url", &crate::redact::redact_url(&self.webhook_url))
            .field("flavor", &self.flavor)
            .field("username", &self.username)
            .field("channel", &self.channel)
            .finish()
    }
}

impl SlackHook {
    pub fn new(flavor: Flavor, webhook_url: String) -> Self {
        Self {
            flavor,
            webhook_url,
            username: None,
            channel: None,
            icon_emoji: None,
            icon_url: None,
            color: None,
            title: None,
            thread_ts: None,
        }
    }

    /// `slack://hook:A-B-C@webhook?…` (shoutrrr 0.6+), `slack://[BOTNAME@]A/B/C?…` (older),
    /// for `https://hooks.slack.com/services/A/B/C`. API tokens (`xoxb:`/`xoxp:`) are refused.
    pub(crate) fn from_slack_url(p: &mut Parts) -> Result<Self, UrlError> {
        let user = p.user.to_ascii_lowercase();
        let (tokens, botname) = if user == "hook" {
            let token = p.password.clone().unwrap_or_default();
            let parts: Vec<String> = token.split(['-', '/']).map(str::to_owned).collect();
            (parts, None)
        } else if user == "xoxb" || user == "xoxp" {
            return Err(p.error("Slack API tokens (xoxb/xoxp) are not supported: use an incoming webhook, slack://hook:A-B-C@webhook"));
        } else {
            let mut parts = vec![p.host.clone()];
            parts.extend(p.segments.iter().cloned());
            (parts, Some(p.user.clone()).filter(|u| !u.is_empty()))
        };
        if tokens.len() != 3
            || tokens
                .iter()
                .any(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(p.error("write slack://hook:T000-B000-XXXX@webhook or slack://T000/B000/XXXX (the three parts of the webhook URL)"));
        }
        for t in &tokens {
            p.secret(t);
        }
        if let Some(pw) = p.password.clone() {
            p.secret(&pw);
        }
        let mut hook = Self::new(
            Flavor::Slack,
            format!("https://hooks.slack.com/services/{}", tokens.join("/")),
        );
        hook.username = p.take(&["botname"]).or(botname);
        hook.channel = p.take(&["channel"]);
        let icon = p.take(&["icon"]);
        hook.icon_emoji = p.take(&["emoji"]);
        match icon {
            Some(i) if i.starts_with("http://") || i.starts_with("https://") => {
                hook.icon_url = Some(i)
            }
            Some(i) => hook.icon_emoji = Some(i),
            None => {}
        }
        hook.color = p.take(&["color"]);
        hook.title = p.take_title();
        hook.thread_ts = p.take(&["thread_ts", "threadts"]);
        Ok(hook)
    }

    /// `mattermost://[USER@]host[:port][/path]/TOKEN[/CHANNEL]` (also `/TOKEN/USER/CHANNEL`,
    /// as shoutrrr's guide writes it) for `https://host/hooks/TOKEN`.
    pub(crate) fn from_mattermost_url(p: &mut Parts) -> Result<Self, UrlError> {
        let segments = p.segments.clone();
        let (token, user, channel) = match segments.as_slice() {
            [t] => (t.clone(), None, None),
            [t, c] => (t.clone(), None, Some(c.clone())),
            [t, u, c] => (t.clone(), Some(u.clone()), Some(c.clone())),
            _ => {
                return Err(p.error("write mattermost://[USER@]host/TOKEN[/CHANNEL]"));
            }
        };
        if p.host.is_empty() {
            return Err(p.error("names no server"));
        }
        p.secret(&token);
        let scheme = http_scheme(p.take_bool(&["disabletls"])?);
        let mut hook = Self::new(
            Flavor::Mattermost,
            format!("{scheme}://{}/hooks/{token}", p.authority()),
        );
        hook.username = Some(p.user.clone()).filter(|u| !u.is_empty()).or(user);
        hook.channel = p.take(&["channel"]).or(channel);
        hook.icon_url = p.take(&["icon"]);
        hook.title = p.take_title();
        Ok(hook)
    }

    /// `rocketchat://[USER@]host[:port]/[hooks/]TOKEN_A/TOKEN_B[/CHANNEL or /@USER]` for
    /// `https://host/hooks/TOKEN_A/TOKEN_B`.
    pub(crate) fn from_rocketchat_url(p: &mut Parts) -> Result<Self, UrlError> {
        let mut segments = p.segments.clone();
        if segments.first().is_some_and(|s| s == "hooks") {
            segments.remove(0);
        }
        let (a, b, channel) = match segments.as_slice() {
            [a, b] => (a.clone(), b.clone(), None),
            [a, b, c] => (a.clone(), b.clone(), Some(c.clone())),
            _ => {
                return Err(
                    p.error("write rocketchat://[USER@]host/hooks/TOKEN_A/TOKEN_B[/CHANNEL]")
                );
            }
        };
        if p.host.is_empty() {
            return Err(p.error("names no server"));
        }
        p.secret(&a);
        p.secret(&b);
        let scheme = http_scheme(p.take_bool(&["disabletls"])?);
        let mut hook = Self::new(
            Flavor::RocketChat,
            format!("{scheme}://{}/hooks/{a}/{b}", p.authority()),
        );
        hook.username = Some(p.user.clone()).filter(|u| !u.is_empty());
        hook.channel = channel.map(|c| {
            if c.starts_with('@') || c.starts_with('#') {
                c
            } else {
                format!("#{c}")
            }
        });
        hook.title = p.take_title();
        Ok(hook)
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let fields: Vec<Value> = m
            .facts
            .iter()
            .map(|(k, v)| json!({"title": k, "value": v, "short": k != "Reason" && k != "Where"}))
            .collect();
        let mut body = json!({
            "text": format!("*{}*\n{}", escape_mrkdwn(&title), escape_mrkdwn(&m.body)),
            "attachments": [{
                "fallback": format!("{title}: {}", m.body),
                "color": self.color.clone().unwrap_or_else(|| m.severity.colour().to_owned()),
                "fields": fields,
            }],
        });
        if let Value::Object(map) = &mut body {
            for (key, value) in [
                ("username", &self.username),
                ("channel", &self.channel),
                ("icon_emoji", &self.icon_emoji),
                ("icon_url", &self.icon_url),
                ("thread_ts", &self.thread_ts),
            ] {
                if let Some(v) = value {
                    let key = if self.flavor == Flavor::RocketChat && key == "icon_emoji" {
                        "emoji"
                    } else {
                        key
                    };
                    map.insert(key.to_owned(), Value::String(v.clone()));
                }
            }
        }
        Prepared::json(self.webhook_url.clone(), &body)
    }
}

/// Slack's three control characters as entities (`&`, `<`, `>`), so text is never read as a
/// link or mention.
pub(crate) fn escape_mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
