//! Matrix (<https://spec.matrix.org/latest/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid>):
//! one `PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}` per room with the
//! access token as `Authorization: Bearer`. The transaction id is derived from the message id,
//! so a retried send is not posted twice.

use serde_json::json;

use super::shoutrrr::{Parts, UrlError, http_scheme};
use super::{Message, Method, Prepared, escape_html, trim_base};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Matrix {
    /// `https://matrix.example.org[:port]`.
    pub homeserver: String,
    pub access_token: Secret,
    /// Room ids (`!abc:example.org`) or aliases (`#room:example.org`); aliases are resolved
    /// by the worker before sending ([`Matrix::alias_url`]), requests go to ids only.
    pub rooms: Vec<String>,
    /// A user for password login: `access_token` is then the password, exchanged for a
    /// token at the first delivery.
    pub user: Option<String>,
    /// The device a password login names (shoutrrr's `deviceid`).
    pub device_id: Option<String>,
    pub title: Option<String>,
}

impl Matrix {
    /// `matrix://[USER]:PASSWORD_OR_TOKEN@host[:port]/?rooms=!id:server,alias&disabletls=&title=&deviceid=`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let password = p.password.clone().unwrap_or_default();
        p.secret(&password);
        if password.is_empty() {
            return Err(p.error("names no access token: write matrix://:ACCESS_TOKEN@homeserver/?rooms=!room:server"));
        }
        if p.host.is_empty() {
            return Err(p.error("names no homeserver"));
        }
        let scheme = http_scheme(p.take_bool(&["disabletls"])?);
        let rooms = p
            .take_list(&["rooms", "room"])
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                if r.starts_with('!') || r.starts_with('#') {
                    r
                } else {
                    format!("#{r}")
                }
            })
            .collect();
        let device_id = p.take(&["deviceid"]).filter(|d| !d.trim().is_empty());
        Ok(Self {
            homeserver: format!("{scheme}://{}", p.authority()),
            access_token: Secret::new(password),
            rooms,
            user: Some(p.user.clone()).filter(|u| !u.is_empty()),
            device_id,
            title: p.take_title(),
        })
    }

    /// What this lookout cannot do: send to every joined room.
    pub(crate) fn undeliverable(&self) -> Option<String> {
        if self.rooms.is_empty() {
            return Some("names no room: add ?rooms=!ROOM_ID:server or #alias:server (sending to every joined room is not supported)".into());
        }
        None
    }

    /// `POST /_matrix/client/v3/login`.
    pub fn login_url(&self) -> String {
        format!("{}/_matrix/client/v3/login", trim_base(&self.homeserver))
    }

    /// The password login request for `user` (a localpart or `@user:server`), as the
    /// client-server API documents it.
    pub fn login_body(&self, user: &str) -> serde_json::Value {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": self.access_token.expose(),
            "initial_device_display_name": "lookout",
        });
        if let Some(device) = &self.device_id {
            body["device_id"] = json!(device);
        }
        body
    }

    /// The URL that resolves a room alias (`#room:server`) to its id:
    /// `GET /_matrix/client/v3/directory/room/{alias}`, answered `{"room_id": "!…"}`.
    pub(crate) fn alias_url(&self, alias: &str) -> String {
        format!(
            "{}/_matrix/client/v3/directory/room/{}",
            trim_base(&self.homeserver),
            percent_encoding::utf8_percent_encode(alias, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    pub fn requests(&self, m: &Message) -> Vec<Prepared> {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let body = json!({
            "msgtype": "m.text",
            "body": format!("{title}\n{}", m.plain_body()),
            "format": "org.matrix.custom.html",
            "formatted_body": format!(
                "<strong>{}</strong><br>{}",
                escape_html(&title),
                escape_html(&m.plain_body()).replace('\n', "<br>")
            ),
        });
        self.rooms
            .iter()
            .enumerate()
            .filter(|(_, room)| room.starts_with('!'))
            .map(|(i, room)| {
                let url = format!(
                    "{}/_matrix/client/v3/rooms/{}/send/m.room.message/lookout-{}-{i}",
                    trim_base(&self.homeserver),
                    percent_encoding::utf8_percent_encode(room, percent_encoding::NON_ALPHANUMERIC),
                    m.id
                );
                Prepared::json(url, &body).method(Method::Put).header(
                    "Authorization",
                    format!("Bearer {}", self.access_token.expose()),
                )
            })
            .collect()
    }
}

/// The `access_token` of a login answer, if it is a plausible one. Pure.
pub(crate) fn access_token_of(body: &[u8]) -> Option<Secret> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = value.get("access_token")?.as_str()?;
    let ok =
        !token.is_empty() && token.len() <= 1024 && token.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| Secret::new(token))
}
