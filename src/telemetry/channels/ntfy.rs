//! ntfy (<https://docs.ntfy.sh/publish/>): a JSON message POSTed to the server's root, with
//! the topic in the body; access token (`Authorization: Bearer`) or basic auth; priority and
//! tags by event unless configured.

use super::shoutrrr::{Parts, UrlError};
use super::{Message, Prepared, trim_base};
use crate::secret::Secret;
use crate::telemetry::EventKind;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Auth {
    Basic { user: String, password: Secret },
    Token(Secret),
}

#[derive(Clone)]
pub struct Ntfy {
    /// `https://ntfy.sh` (with a sub-path when the server has one), no trailing `/`.
    pub server: String,
    pub topic: String,
    pub auth: Option<Auth>,
    /// 1 (min) to 5 (max) for every event; `None`: by event.
    pub priority: Option<u8>,
    /// Tags for every event; `None`: by event.
    pub tags: Option<Vec<String>>,
    /// Priorities for some events (before `priority`).
    pub priorities: Vec<(EventKind, u8)>,
    /// Tags for some events (before `tags`).
    pub tags_by_event: Vec<(EventKind, Vec<String>)>,
    pub title: Option<String>,
    pub click: Option<String>,
    pub icon: Option<String>,
    pub email: Option<String>,
    pub cache: Option<bool>,
    pub firebase: Option<bool>,
}

impl std::fmt::Debug for Ntfy {
    /// The topic is masked: on a public server, knowing it is reading it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ntfy")
            .field("server", &crate::redact::redact_url(&self.server))
            .field("topic", &crate::redact::MASK)
            .field("auth", &self.auth.as_ref().map(|_| crate::redact::MASK))
            .field("priority", &self.priority)
            .field("tags", &self.tags)
            .finish()
    }
}

/// `1`-`5` or ntfy's names (`min`, `low`, `default`, `high`, `max`, `urgent`).
pub(crate) fn parse_priority(s: &str) -> Option<u8> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "min" => Some(1),
        "2" | "low" => Some(2),
        "3" | "default" => Some(3),
        "4" | "high" => Some(4),
        "5" | "max" | "urgent" => Some(5),
        _ => None,
    }
}

impl Ntfy {
    /// `ntfy://[user:password@]host[:port]/[path/]topic?…`; a password without a user is an
    /// access token.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let scheme = match p.take(&["scheme"]).as_deref().map(str::to_ascii_lowercase) {
            None => "https".to_owned(),
            Some(s) if s == "http" || s == "https" => s,
            Some(s) => return Err(p.error(format!("scheme is {s:?}; write http or https"))),
        };
        let host = if p.host.is_empty() {
            "ntfy.sh".to_owned()
        } else {
            p.authority()
        };
        let Some((topic, path)) = p.segments.split_last() else {
            return Err(p.error("the URL names no topic: write ntfy://host/TOPIC"));
        };
        let (topic, path) = (topic.clone(), path.join("/"));
        p.secret(&topic);
        let server = if path.is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}/{path}")
        };
        let password = p.password.clone().filter(|s| !s.is_empty());
        if let Some(pw) = &password {
            p.secret(pw);
        }
        let auth = match (p.user.is_empty(), password) {
            (_, None) if !p.user.is_empty() => {
                return Err(p.error("a user without a password: write ntfy://USER:PASSWORD@host/topic, or ntfy://:TOKEN@host/topic for an access token"));
            }
            (_, None) => None,
            (true, Some(token)) => Some(Auth::Token(Secret::new(token))),
            (false, Some(pw)) => Some(Auth::Basic {
                user: p.user.clone(),
                password: Secret::new(pw),
            }),
        };
        let priority = match p.take(&["priority"]) {
            None => None,
            Some(v) => Some(parse_priority(&v).ok_or_else(|| {
                p.error(format!(
                    "priority is {v:?}; write 1-5 or min, low, default, high, max"
                ))
            })?),
        };
        Ok(Self {
            server,
            topic,
            auth,
            priority,
            tags: p.take_list(&["tags"]),
            priorities: Vec::new(),
            tags_by_event: Vec::new(),
            title: p.take_title(),
            click: p.take(&["click"]),
            icon: p.take(&["icon"]),
            email: p.take(&["email"]),
            cache: p.take_bool(&["cache"])?,
            firebase: p.take_bool(&["firebase"])?,
        })
    }

    /// The priority an event gets unless one is configured.
    pub(crate) fn default_priority(kind: EventKind) -> u8 {
        match kind {
            EventKind::UpdateAvailable | EventKind::UpdateStarted => 2,
            EventKind::Updated => 3,
            EventKind::RolledBack => 4,
            EventKind::UpdateFailed => 5,
        }
    }

    /// The tags (emoji short codes) an event gets unless they are configured.
    pub(crate) fn default_tags(kind: EventKind) -> &'static [&'static str] {
        match kind {
            EventKind::UpdateAvailable => &["arrow_up"],
            EventKind::UpdateStarted => &["hourglass_flowing_sand"],
            EventKind::Updated => &["white_check_mark"],
            EventKind::RolledBack => &["rewind", "warning"],
            EventKind::UpdateFailed => &["x", "rotating_light"],
        }
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let tags: Vec<String> = match (
            self.tags_by_event.iter().find(|(k, _)| *k == m.kind),
            &self.tags,
        ) {
            (Some((_, t)), _) | (None, Some(t)) => t.clone(),
            (None, None) => Self::default_tags(m.kind)
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        };
        let priority = self
            .priorities
            .iter()
            .find(|(k, _)| *k == m.kind)
            .map(|(_, p)| *p)
            .or(self.priority)
            .unwrap_or(Self::default_priority(m.kind));
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let mut body = json!({
            "topic": self.topic,
            "title": title,
            "message": m.plain_body(),
            "priority": priority,
            "tags": tags,
        });
        if let Value::Object(map) = &mut body {
            for (key, value) in [
                ("click", &self.click),
                ("icon", &self.icon),
                ("email", &self.email),
            ] {
                if let Some(v) = value {
                    map.insert(key.to_owned(), Value::String(v.clone()));
                }
            }
        }
        let mut r = Prepared::json(format!("{}/", trim_base(&self.server)), &body);
        match &self.auth {
            Some(Auth::Token(t)) => r = r.header("Authorization", format!("Bearer {}", t.expose())),
            Some(Auth::Basic { user, password }) => {
                r = r.header(
                    "Authorization",
                    format!("Basic {}", base64(&format!("{user}:{}", password.expose()))),
                );
            }
            None => {}
        }
        if self.cache == Some(false) {
            r = r.header("Cache", "no");
        }
        if self.firebase == Some(false) {
            r = r.header("Firebase", "no");
        }
        r
    }
}

/// Standard base64 with padding, for basic auth.
pub fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
