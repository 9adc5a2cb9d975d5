//! Email over SMTP, shoutrrr's `smtp://`: parsed, so that a Watchtower URL list reads, and
//! refused at load time until lookout delivers it ([`super::Service::undeliverable`]).

use super::shoutrrr::{Parts, UrlError};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    pub subject: Option<String>,
}

impl Email {
    /// `smtp://[USER:PASSWORD@]host[:port]/?from=&to=a,b[&subject=…]` (shoutrrr's
    /// `fromaddress`/`toaddresses` too).
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        if p.host.is_empty() {
            return Err(p.error("names no server"));
        }
        let password = p.password.clone().filter(|s| !s.is_empty());
        if let Some(pw) = &password {
            p.secret(pw);
        }
        let from = p
            .take(&["fromaddress", "from"])
            .ok_or_else(|| p.error("names no sender: add ?from=ADDRESS"))?;
        let to = p.take_list(&["toaddresses", "to"]).unwrap_or_default();
        if to.is_empty() {
            return Err(p.error("names no recipient: add &to=ADDRESS[,ADDRESS…]"));
        }
        for key in [
            &["auth"][..],
            &["encryption"],
            &["usestarttls"],
            &["usehtml"],
            &["fromname"],
            &["clienthost"],
        ] {
            let _ = p.take(key);
        }
        Ok(Self {
            host: p.host.clone(),
            port: p.port.unwrap_or(25),
            username: Some(p.user.clone()).filter(|u| !u.is_empty()),
            password: password.map(Secret::new),
            from,
            to,
            subject: p.take(&["subject", "title"]),
        })
    }
}
