//! MQTT, `mqtt://host:port?topic=…` / `mqtts://…`: parsed, so that a URL list reads, and
//! refused at load time until lookout delivers it ([`super::Service::undeliverable`]).

use super::shoutrrr::{Parts, UrlError};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub topic: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl Mqtt {
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        if p.host.is_empty() {
            return Err(p.error("names no broker: write mqtt://host:port"));
        }
        let disable_tls = p.take_bool(&["disabletls"])?;
        let tls = p.service == "mqtts" || disable_tls == Some(false);
        let password = p
            .take_secret(&["password"])
            .or_else(|| p.password.clone())
            .filter(|s| !s.is_empty());
        if let Some(pw) = &password {
            p.secret(pw);
        }
        Ok(Self {
            host: p.host.clone(),
            port: p.port.unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            topic: p.take(&["topic"]),
            client_id: p.take(&["clientid"]),
            username: p
                .take(&["username"])
                .or_else(|| Some(p.user.clone()))
                .filter(|u| !u.is_empty()),
            password: password.map(Secret::new),
        })
    }
}
