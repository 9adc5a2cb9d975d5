//! Email over SMTP (lettre, over tokio and rustls): shoutrrr's
//! `smtp://[USER:PASSWORD@]host[:port]/?from=…&to=a,b[&…]` or a `service = "email"` entry.
//!
//! One message per notification, to every recipient at once, as `multipart/alternative` with a
//! plain-text and an HTML part (or plain text only, `usehtml=no`). The connection is implicit TLS
//! (port 465, `encryption=ImplicitTLS`), STARTTLS (required whenever credentials are sent), or,
//! only when asked for (`encryption=None`), plain. Server certificates are checked against the
//! system's roots plus `tls_ca_file`; `tls_skip_verify` turns the check off for a self-signed
//! relay the operator trusts. Building the mail ([`Email::mail`]) is pure; [`Email::send`]
//! connects.

use std::time::{Duration, SystemTime};

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::shoutrrr::{Parts, UrlError};
use super::{Message, TlsTrust, escape_html};
use crate::secret::Secret;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Plain, then `STARTTLS`; the server must offer it.
    StartTls,
    /// `STARTTLS` when the server offers it, else plain. Never with credentials.
    Opportunistic,
    /// Plain text, as asked for with `encryption=None`.
    None,
}

/// The SASL mechanisms lettre may use; `None` lets it choose among PLAIN and LOGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Default,
    Plain,
    Login,
    /// `XOAUTH2`: the password is an OAuth2 access token.
    OAuth2,
    /// No authentication, even when a user is given.
    None,
}

#[derive(Debug, Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, `addr@example.org` (checked when read).
    pub from: String,
    /// The sender's display name.
    pub from_name: Option<String>,
    /// One or more recipients (checked when read).
    pub to: Vec<String>,
    /// A prefix of lookout's subject.
    pub subject: Option<String>,
    pub encryption: Encryption,
    pub auth: Auth,
    /// An HTML part next to the plain text.
    pub html: bool,
    /// The name said in `EHLO`; `None` is this machine's host name.
    pub client_host: Option<String>,
    pub tls: TlsTrust,
}

impl Email {
    /// `smtp://[USER:PASSWORD@]host[:port]/?from=&to=a,b` with shoutrrr's parameters
    /// `fromaddress`/`from`, `toaddresses`/`to`, `fromname`, `subject`/`title`, `encryption`
    /// (`None`, `ExplicitTLS`, `ImplicitTLS`, `Auto`), `usestarttls`, `auth` (`None`, `Plain`,
    /// `Login`, `OAuth2`, `Unknown`), `usehtml` and `clienthost`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        if p.host.is_empty() {
            return Err(p.error("names no server: write smtp://host:port/?from=…&to=…"));
        }
        let password = p.password.clone().filter(|s| !s.is_empty());
        if let Some(pw) = &password {
            p.secret(pw);
        }
        let from = p
            .take(&["fromaddress", "from"])
            .ok_or_else(|| p.error("names no sender: add ?from=ADDRESS"))?;
        let to = p.take_list(&["toaddresses", "to"]).unwrap_or_default();
        let encryption = p.take(&["encryption"]);
        let starttls = p.take_bool(&["usestarttls"])?;
        let auth = p.take(&["auth"]);
        let html = p.take_bool(&["usehtml"])?;
        let client_host = p.take(&["clienthost"]);
        let settings = Settings {
            host: p.host.clone(),
            port: p.port,
            username: Some(p.user.clone()).filter(|u| !u.is_empty()),
            password: password.map(Secret::new),
            from,
            from_name: p.take(&["fromname"]).filter(|n| !n.trim().is_empty()),
            to,
            subject: p.take(&["subject", "title"]),
            encryption,
            starttls,
            auth,
            html,
            client_host,
        };
        settings.build().map_err(|e| p.error(e))
    }

    /// The mail for `m`: sender, every recipient, a subject, a stable `Message-ID` (retries
    /// and the summary's id give the same one) and the bodies. Pure.
    pub fn mail(&self, m: &Message) -> Result<lettre::Message, String> {
        let from = mailbox(&self.from, self.from_name.as_deref())?;
        let subject = match &self.subject {
            Some(prefix) if !prefix.trim().is_empty() => format!("{prefix}: {}", m.title),
            _ => m.title.clone(),
        };
        let at = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(m.at.as_millisecond()).unwrap_or(0));
        let mut b = lettre::Message::builder()
            .from(from)
            .subject(subject)
            .date(at)
            .message_id(Some(format!("<{}@lookout>", message_id_part(&m.id))));
        for to in &self.to {
            b = b.to(mailbox(to, None)?);
        }
        let plain = text_body(m);
        let built = if self.html {
            b.multipart(MultiPart::alternative_plain_html(plain, html_body(m)))
        } else {
            b.singlepart(SinglePart::plain(plain))
        };
        built.map_err(|e| format!("cannot build the mail: {e}"))
    }

    /// Sends `mail` within `timeout` per SMTP command. The error says what failed, never a
    /// credential.
    pub(crate) async fn send(
        &self,
        mail: lettre::Message,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let transport = self.transport(timeout)?;
        transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|e| SendError {
                transient: !e.is_permanent(),
                message: crate::redact::redact(&e.to_string()).into_owned(),
            })
    }

    fn transport(
        &self,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let tls = match self.encryption {
            Encryption::None => Tls::None,
            Encryption::Implicit => Tls::Wrapper(self.tls_parameters()?),
            Encryption::StartTls => Tls::Required(self.tls_parameters()?),
            Encryption::Opportunistic => Tls::Opportunistic(self.tls_parameters()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(name) = &self.client_host {
            b = b.hello_name(ClientId::Domain(name.clone()));
        }
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            let mechanisms = match self.auth {
                Auth::None => None,
                Auth::Default => Some(vec![Mechanism::Plain, Mechanism::Login]),
                Auth::Plain => Some(vec![Mechanism::Plain]),
                Auth::Login => Some(vec![Mechanism::Login]),
                Auth::OAuth2 => Some(vec![Mechanism::Xoauth2]),
            };
            if let Some(mechanisms) = mechanisms {
                b = b
                    .credentials(Credentials::new(user.clone(), password.expose().to_owned()))
                    .authentication(mechanisms);
            }
        }
        Ok(b.build())
    }

    fn tls_parameters(&self) -> Result<TlsParameters, SendError> {
        let permanent = |message: String| SendError {
            transient: false,
            message,
        };
        let mut b = TlsParameters::builder(self.host.clone());
        if let Some(path) = &self.tls.ca_file {
            let pem = self.tls.read_ca().map_err(permanent)?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                permanent(format!(
                    "tls_ca_file {}: not PEM certificates ({e})",
                    path.display()
                ))
            })?;
            b = b.add_root_certificate(cert);
        }
        if self.tls.skip_verify {
            b = b
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        b.build_rustls()
            .map_err(|e| permanent(format!("cannot set up TLS: {e}")))
    }
}

/// Why a mail was not sent; `transient` ones are tried again.
#[derive(Debug)]
pub(crate) struct SendError {
    pub transient: bool,
    pub message: String,
}

/// What an email entry says, from a URL or from fields; [`Settings::build`] checks it.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub host: String,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub subject: Option<String>,
    /// shoutrrr's `Encryption`: `None`, `ExplicitTLS`, `ImplicitTLS`, `Auto`; lookout's
    /// `starttls` and `implicit` too.
    pub encryption: Option<String>,
    pub starttls: Option<bool>,
    pub auth: Option<String>,
    pub html: Option<bool>,
    pub client_host: Option<String>,
}

impl Settings {
    pub(crate) fn build(self) -> Result<Email, String> {
        mailbox(&self.from, self.from_name.as_deref()).map_err(|e| format!("from: {e}"))?;
        if self.to.is_empty() {
            return Err("names no recipient: add &to=ADDRESS[,ADDRESS…]".into());
        }
        for to in &self.to {
            mailbox(to, None).map_err(|e| format!("to: {e}"))?;
        }
        let has_credentials = self.username.is_some() && self.password.is_some();
        if self.username.is_some() != self.password.is_some() {
            return Err("give both a user and a password, or neither".into());
        }
        let encryption = match self
            .encryption
            .as_deref()
            .map(|e| e.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("auto" | "") => match (self.port, self.starttls) {
                (Some(465), _) => Encryption::Implicit,
                (_, Some(false)) if has_credentials => {
                    return Err("usestarttls=no would send the password in plain text: use encryption=ImplicitTLS, or encryption=None to send it unprotected on purpose".into());
                }
                (_, Some(false)) => Encryption::None,
                _ if has_credentials => Encryption::StartTls,
                _ => Encryption::Opportunistic,
            },
            Some("implicittls" | "implicit" | "tls" | "ssl") => Encryption::Implicit,
            Some("explicittls" | "explicit" | "starttls") => Encryption::StartTls,
            Some("none") => Encryption::None,
            Some(other) => {
                return Err(format!(
                    "encryption {other:?} is not one of None, ExplicitTLS, ImplicitTLS, Auto"
                ));
            }
        };
        if encryption == Encryption::StartTls && self.starttls == Some(false) {
            return Err("encryption=ExplicitTLS needs STARTTLS, but usestarttls=no".into());
        }
        let auth = match self
            .auth
            .as_deref()
            .map(|a| a.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("unknown" | "") => Auth::Default,
            Some("plain") => Auth::Plain,
            Some("login") => Auth::Login,
            Some("oauth2" | "xoauth2") => Auth::OAuth2,
            Some("none") => Auth::None,
            Some("crammd5") => {
                return Err(
                    "auth CRAMMD5 is not supported by lookout: use Plain, Login or OAuth2".into(),
                );
            }
            Some(other) => {
                return Err(format!(
                    "auth {other:?} is not one of None, Plain, Login, OAuth2, Unknown"
                ));
            }
        };
        let client_host = match self.client_host.as_deref().map(str::trim) {
            None | Some("" | "auto") => None,
            Some(name)
                if name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b)) =>
            {
                Some(name.to_owned())
            }
            Some(name) => return Err(format!("clienthost {name:?} is not a host name")),
        };
        // shoutrrr's default port is 25; implicit TLS is SMTPS's 465.
        let port = self.port.unwrap_or(match encryption {
            Encryption::Implicit => 465,
            _ => 25,
        });
        Ok(Email {
            host: self.host,
            port,
            username: self.username,
            password: self.password,
            from: self.from,
            from_name: self.from_name,
            to: self.to,
            subject: self.subject.filter(|s| !s.trim().is_empty()),
            encryption,
            auth,
            html: self.html.unwrap_or(true),
            client_host,
            tls: TlsTrust::default(),
        })
    }
}

fn mailbox(address: &str, name: Option<&str>) -> Result<Mailbox, String> {
    let addr = address
        .trim()
        .parse::<lettre::Address>()
        .map_err(|e| format!("{address:?} is not an email address ({e})"))?;
    Ok(Mailbox::new(name.map(str::to_owned), addr))
}

/// The part of a `Message-ID` left of `@`: letters, digits, `-` and `.`.
fn message_id_part(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(128)
        .collect()
}

/// Title, body and every fact, as plain text.
fn text_body(m: &Message) -> String {
    let mut out = format!("{}\n\n{}\n", m.title, m.body);
    if !m.facts.is_empty() {
        out.push('\n');
        for (k, v) in &m.facts {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    out
}

/// The same as HTML: a heading, the body's lines and the facts as a table.
fn html_body(m: &Message) -> String {
    let lines = m
        .body
        .lines()
        .map(escape_html)
        .collect::<Vec<_>>()
        .join("<br>\n");
    let rows = m
        .facts
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape_html(k),
                escape_html(v)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "<!DOCTYPE html>\n<html><body>\n<h2 style=\"color:{}\">{}</h2>\n<p>{lines}</p>\n<table>\n{rows}\n</table>\n</body></html>\n",
        m.severity.colour(),
        escape_html(&m.title)
    )
}
