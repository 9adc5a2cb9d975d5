//! Gotify (<https://gotify.net/docs/pushmsg>): `POST /message` with the application token in
//! `X-Gotify-Key`, a title, the message and a priority (0-10) by event unless configured.

use serde_json::json;

use super::shoutrrr::{Parts, UrlError, http_scheme};
use super::{Message, Prepared, trim_base};
use crate::secret::Secret;
use crate::telemetry::EventKind;

#[derive(Debug, Clone)]
pub struct Gotify {
    /// `https://gotify.example.com[/sub/path]`.
    pub server: String,
    pub token: Secret,
    pub priority: Option<u8>,
    pub title: Option<String>,
}

impl Gotify {
    /// `gotify://host[:port][/sub/path]/TOKEN[/]?priority=&title=&disabletls=`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let Some((token, path)) = p.segments.split_last() else {
            return Err(p.error("the URL names no application token: write gotify://host/TOKEN"));
        };
        let (token, path) = (token.clone(), path.join("/"));
        p.secret(&token);
        if p.host.is_empty() {
            return Err(p.error("the URL names no server: write gotify://host/TOKEN"));
        }
        let scheme = http_scheme(p.take_bool(&["disabletls"])?);
        let server = if path.is_empty() {
            format!("{scheme}://{}", p.authority())
        } else {
            format!("{scheme}://{}/{path}", p.authority())
        };
        let priority = match p.take(&["priority"]) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|n| *n <= 10)
                    .ok_or_else(|| p.error(format!("priority is {v:?}; write 0 to 10")))?,
            ),
        };
        Ok(Self {
            server,
            token: Secret::new(token),
            priority,
            title: p.take_title(),
        })
    }

    pub(crate) fn default_priority(kind: EventKind) -> u8 {
        match kind {
            EventKind::UpdateAvailable | EventKind::UpdateStarted => 2,
            EventKind::Updated => 4,
            EventKind::RolledBack => 7,
            EventKind::UpdateFailed => 8,
        }
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let body = json!({
            "title": title,
            "message": m.plain_body(),
            "priority": self.priority.unwrap_or(Self::default_priority(m.kind)),
            "extras": {"client::display": {"contentType": "text/plain"}},
        });
        Prepared::json(format!("{}/message", trim_base(&self.server)), &body)
            .header("X-Gotify-Key", self.token.expose())
    }
}
