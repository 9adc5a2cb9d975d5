//! Discord webhooks (<https://discord.com/developers/docs/resources/webhook#execute-webhook>):
//! an embed with the title, body, a colour by event and the facts as fields.

use serde_json::{Value, json};

use super::shoutrrr::{Parts, UrlError};
use super::{Message, Prepared};

pub const API: &str = "https://discord.com";

#[derive(Clone)]
pub struct Discord {
    /// The whole webhook URL (its path is the credential).
    pub webhook_url: String,
    pub username: Option<String>,
    pub avatar_url: Option<String>,
    /// `0xRRGGBB` or decimal; `None`: by event.
    pub color: Option<u32>,
    pub title: Option<String>,
}

impl std::fmt::Debug for Discord {
    /// The URL as scheme and host only: its path is the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discord")
            .field("webhook_url", &crate::redact::redact_url(&self.webhook_url))
            .field("username", &self.username)
            .field("color", &self.color)
            .field("title", &self.title)
            .finish()
    }
}

impl Discord {
    /// `discord://TOKEN@WEBHOOK_ID[?title=&username=&avatar=&color=]` for
    /// `https://discord.com/api/webhooks/WEBHOOK_ID/TOKEN`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let (token, id) = (p.user.clone(), p.host.clone());
        if token.is_empty() || id.is_empty() {
            return Err(p.error("write discord://TOKEN@WEBHOOK_ID"));
        }
        if !p.segments.is_empty() {
            return Err(p.error(
                "has a path (shoutrrr's raw JSON mode is not supported); write discord://TOKEN@WEBHOOK_ID",
            ));
        }
        p.secret(&token);
        let color = match p.take(&["color"]) {
            None => None,
            Some(c) => Some(parse_colour(&c).ok_or_else(|| {
                p.error(format!(
                    "color is {c:?}; write 0xRRGGBB or a decimal number"
                ))
            })?),
        };
        Ok(Self {
            webhook_url: format!("{API}/api/webhooks/{id}/{token}"),
            username: p.take(&["username"]),
            avatar_url: p.take(&["avatar", "avatarurl"]),
            color,
            title: p.take_title(),
        })
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let fields: Vec<Value> = m
            .facts
            .iter()
            .map(|(k, v)| json!({"name": k, "value": truncate(v, 1000), "inline": k == "Service" || k == "Host"}))
            .collect();
        let colour = self.color.unwrap_or_else(|| {
            u32::from_str_radix(m.severity.colour().trim_start_matches('#'), 16).unwrap_or(0)
        });
        let mut body = json!({
            "embeds": [{
                "title": truncate(&title, 256),
                "description": truncate(&m.body, 4000),
                "color": colour,
                "fields": fields,
                "timestamp": m.at.to_string(),
            }],
            "allowed_mentions": {"parse": []},
        });
        if let Value::Object(map) = &mut body {
            if let Some(u) = &self.username {
                map.insert("username".into(), json!(u));
            }
            if let Some(a) = &self.avatar_url {
                map.insert("avatar_url".into(), json!(a));
            }
        }
        Prepared::json(self.webhook_url.clone(), &body)
    }
}

/// `0xff8000`, `#ff8000` or `16744448`.
pub(crate) fn parse_colour(s: &str) -> Option<u32> {
    let s = s.trim();
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix('#')) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => s.parse().ok()?,
    };
    (n <= 0xff_ffff).then_some(n)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
