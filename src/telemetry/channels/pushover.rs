//! Pushover (<https://pushover.net/api>): `POST /1/messages.json` with the application token,
//! the user key, title, message, priority (-2 to 2) and devices.

use serde_json::{Value, json};

use super::shoutrrr::{Parts, UrlError};
use super::{Message, Prepared, trim_base};
use crate::secret::Secret;
use crate::telemetry::EventKind;

pub const API: &str = "https://api.pushover.net";

#[derive(Debug, Clone)]
pub struct Pushover {
    pub api: String,
    pub token: Secret,
    pub user: Secret,
    pub devices: Vec<String>,
    pub priority: Option<i8>,
    pub title: Option<String>,
}

pub(crate) fn parse_priority(s: &str) -> Option<i8> {
    s.trim().parse::<i8>().ok().filter(|n| (-2..=2).contains(n))
}

impl Pushover {
    /// `pushover://shoutrrr:API_TOKEN@USER_KEY/?devices=a,b&title=&priority=`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let token = p.password.clone().unwrap_or_default();
        let user = p.host.clone();
        p.secret(&token);
        p.secret(&user);
        if token.is_empty() || user.is_empty() {
            return Err(p.error("write pushover://shoutrrr:API_TOKEN@USER_KEY/"));
        }
        let priority = match p.take(&["priority"]) {
            None => None,
            Some(v) => Some(
                parse_priority(&v)
                    .ok_or_else(|| p.error(format!("priority is {v:?}; write -2 to 2")))?,
            ),
        };
        Ok(Self {
            api: API.to_owned(),
            token: Secret::new(token),
            user: Secret::new(user),
            devices: p.take_list(&["devices"]).unwrap_or_default(),
            priority,
            title: p.take_title(),
        })
    }

    pub(crate) fn default_priority(kind: EventKind) -> i8 {
        match kind {
            EventKind::UpdateAvailable | EventKind::UpdateStarted => -1,
            EventKind::Updated => 0,
            EventKind::RolledBack | EventKind::UpdateFailed => 1,
        }
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let priority = self.priority.unwrap_or(Self::default_priority(m.kind));
        let mut body = json!({
            "token": self.token.expose(),
            "user": self.user.expose(),
            "title": truncate(&title, 250),
            "message": truncate(&m.plain_body(), 1024),
            "priority": priority,
            "timestamp": m.at.as_second(),
        });
        if let Value::Object(map) = &mut body {
            if !self.devices.is_empty() {
                map.insert("device".into(), json!(self.devices.join(",")));
            }
            if priority == 2 {
                // Emergency priority repeats until acknowledged: every 5 minutes for an hour.
                map.insert("retry".into(), json!(300));
                map.insert("expire".into(), json!(3600));
            }
        }
        Prepared::json(format!("{}/1/messages.json", trim_base(&self.api)), &body)
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s.chars().count() > max => format!("{}…", &s[..i]),
        _ => s.to_owned(),
    }
}
