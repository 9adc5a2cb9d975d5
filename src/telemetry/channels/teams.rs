//! Microsoft Teams: an adaptive card POSTed to a Workflows webhook (Power Automate's "When a
//! Teams webhook request is received") or to an organisation's `webhook.office.com` hook, in
//! the message shape both accept.

use serde_json::json;

use super::shoutrrr::{Parts, UrlError};
use super::{Message, Prepared};

#[derive(Clone)]
pub struct Teams {
    /// The whole webhook URL (its path and query are the credential).
    pub webhook_url: String,
    pub title: Option<String>,
    /// `#rrggbb` or `rrggbb`: shown as an accent line; `None`: by event.
    pub color: Option<String>,
}

impl std::fmt::Debug for Teams {
    /// The URL as scheme and host only: its path is the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teams")
            .field("webhook_url", &crate::redact::redact_url(&self.webhook_url))
            .field("title", &self.title)
            .field("color", &self.color)
            .finish()
    }
}

impl Teams {
    /// `teams://GROUP@TENANT/ALT_ID/GROUP_OWNER[/EXTRA_ID]?host=ORG.webhook.office.com[&title=][&color=]`,
    /// shoutrrr's form of
    /// `https://ORG.webhook.office.com/webhookb2/GROUP@TENANT/IncomingWebhook/ALT_ID/GROUP_OWNER/EXTRA_ID`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let host = p.take(&["host"]).ok_or_else(|| {
            p.error("names no host: add ?host=ORGANISATION.webhook.office.com (the legacy outlook.office.com hooks are retired), or configure a Workflows webhook as webhook_url")
        })?;
        if host.contains(['/', '@', '?', '#']) || host.is_empty() {
            return Err(p.error("host must be a host name such as contoso.webhook.office.com"));
        }
        let (group, tenant) = (p.user.clone(), p.host.clone());
        let segments = p.segments.clone();
        if group.is_empty() || tenant.is_empty() || !(2..=3).contains(&segments.len()) {
            return Err(p.error(
                "write teams://GROUP@TENANT/ALT_ID/GROUP_OWNER/EXTRA_ID?host=ORGANISATION.webhook.office.com",
            ));
        }
        for s in std::iter::once(&group).chain(&segments) {
            p.secret(s);
        }
        p.secret(&tenant);
        let webhook_url = format!(
            "https://{host}/webhookb2/{group}@{tenant}/IncomingWebhook/{}",
            segments.join("/")
        );
        let color = p.take(&["color"]);
        Ok(Self {
            webhook_url,
            title: p.take_title(),
            color,
        })
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let style = self
            .color
            .as_deref()
            .and_then(named_colour)
            .unwrap_or(match m.severity {
                super::Severity::Info => "accent",
                super::Severity::Success => "good",
                super::Severity::Warning => "warning",
                super::Severity::Error => "attention",
            });
        let facts: Vec<_> = m
            .facts
            .iter()
            .map(|(k, v)| json!({"title": k, "value": v}))
            .collect();
        let card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "msteams": {"width": "Full"},
            "body": [
                {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true, "color": style},
                {"type": "TextBlock", "text": m.body, "wrap": true},
                {"type": "FactSet", "facts": facts},
            ],
        });
        let body = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        });
        Prepared::json(self.webhook_url.clone(), &body)
    }
}

/// The adaptive-card colour nearest to `rrggbb` (cards take named colours only): red
/// `attention`, orange and yellow `warning`, green `good`, anything else `accent`.
pub(crate) fn named_colour(hex: &str) -> Option<&'static str> {
    let hex = hex.trim().trim_start_matches('#');
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    let (r, g, b) = (channel(0)?, channel(2)?, channel(4)?);
    Some(if r > g && r > b {
        if g > r / 2 { "warning" } else { "attention" }
    } else if g >= r && g > b {
        "good"
    } else {
        "accent"
    })
}
