//! MQTT (rumqttc), `mqtt://[USER:PASSWORD@]host[:port][?topic=…]` / `mqtts://…`, for Home
//! Assistant and anything else that reads a broker.
//!
//! Topics, under `topic` (default `lookout/<host>`):
//! - `<topic>/availability`: `online`, retained; the broker publishes `offline` when lookout's
//!   connection drops (the last will).
//! - `<topic>/<service>/state`: one retained JSON document per service, in the shape of Home
//!   Assistant's MQTT `update` entity (`installed_version`, `latest_version`, `title`,
//!   `release_summary`, `in_progress`) plus lookout's own `service`, `image`, `candidate`,
//!   `result`, `reason` and `updated_at`.
//! - `<topic>/<service>/event`: each notification's JSON, not retained.
//! - `<discovery_prefix>/update/lookout_<host>/<service>/config` (default prefix
//!   `homeassistant`): Home Assistant's discovery document, retained, so every service appears
//!   as an `update` entity.
//! - `<topic>/<service>/install`: only with `install = true`: a message `install` asks lookout
//!   to update that service, as a pass of that service that honours maintenance windows and
//!   pause; discovery then carries the command topic, so Home Assistant shows an Install button.
//!
//! What is published is built by pure functions ([`Mqtt::discovery`], [`ServiceState::json`]);
//! [`run`] keeps the connection (reconnecting with backoff) and republishes everything on each
//! connect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Packet, QoS, Transport};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::TlsTrust;
use super::shoutrrr::{Parts, UrlError};
use crate::secret::Secret;
use crate::telemetry::event::{Event, PassService};
use crate::telemetry::{EventKind, Metrics};

#[derive(Debug, Clone)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The base of lookout's topics; `None` is `lookout/<host>`.
    pub topic: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Home Assistant discovery documents are published (default yes).
    pub discovery: bool,
    pub discovery_prefix: String,
    /// `<topic>/<service>/install` is listened to.
    pub install: bool,
    pub trust: TlsTrust,
}

impl Mqtt {
    /// `mqtt://[USER:PASSWORD@]host[:port]/?topic=&clientid=&username=&password=&disabletls=`
    /// and lookout's `discovery`, `discoveryprefix` and `install`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        if p.host.is_empty() {
            return Err(p.error("names no broker: write mqtt://host:port"));
        }
        let disable_tls = p.take_bool(&["disabletls"])?;
        let tls = match (p.service.as_str(), disable_tls) {
            ("mqtts", Some(true)) => {
                return Err(p.error("mqtts:// with disabletls=yes: write mqtt:// for plain MQTT"));
            }
            ("mqtts", _) => true,
            (_, Some(false)) => true,
            _ => false,
        };
        let password = p
            .take_secret(&["password"])
            .or_else(|| p.password.clone())
            .filter(|s| !s.is_empty());
        if let Some(pw) = &password {
            p.secret(pw);
        }
        let topic = p.take(&["topic"]);
        if let Some(t) = &topic {
            check_topic(t).map_err(|e| p.error(format!("topic {t:?} {e}")))?;
        }
        let discovery_prefix = p
            .take(&["discoveryprefix"])
            .unwrap_or_else(|| "homeassistant".to_owned());
        check_topic(&discovery_prefix)
            .map_err(|e| p.error(format!("discoveryprefix {discovery_prefix:?} {e}")))?;
        let client_id = p.take(&["clientid"]);
        if let Some(id) = &client_id {
            if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
                return Err(p.error("clientid must be 1 to 64 printable characters"));
            }
        }
        Ok(Self {
            host: p.host.clone(),
            port: p.port.unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            topic,
            client_id,
            username: p
                .take(&["username"])
                .or_else(|| Some(p.user.clone()))
                .filter(|u| !u.is_empty()),
            password: password.map(Secret::new),
            discovery: p.take_bool(&["discovery"])?.unwrap_or(true),
            discovery_prefix,
            install: p.take_bool(&["install"])?.unwrap_or(false),
            trust: TlsTrust::default(),
        })
    }

    /// The base of lookout's topics on `host`.
    pub fn base(&self, host: &str) -> String {
        match &self.topic {
            Some(t) => t.trim_end_matches('/').to_owned(),
            None => format!("lookout/{}", topic_part(host)),
        }
    }

    pub fn availability_topic(&self, host: &str) -> String {
        format!("{}/availability", self.base(host))
    }

    pub fn state_topic(&self, host: &str, service: &str) -> String {
        format!("{}/{}/state", self.base(host), topic_part(service))
    }

    pub fn event_topic(&self, host: &str, service: &str) -> String {
        format!("{}/{}/event", self.base(host), topic_part(service))
    }

    pub fn install_topic(&self, host: &str, service: &str) -> String {
        format!("{}/{}/install", self.base(host), topic_part(service))
    }

    pub fn discovery_topic(&self, host: &str, service: &str) -> String {
        format!(
            "{}/update/lookout_{}/{}/config",
            self.discovery_prefix.trim_end_matches('/'),
            topic_part(host),
            topic_part(service)
        )
    }

    /// Home Assistant's discovery document for `service`: an `update` entity whose state is
    /// the service's state topic, one device per lookout host, available while lookout is
    /// connected, with an install command when `install` is on. Pure.
    pub fn discovery(&self, host: &str, service: &str) -> Value {
        let mut doc = json!({
            "name": service,
            "unique_id": format!("lookout_{}_{}", topic_part(host), topic_part(service)),
            "object_id": format!("lookout_{}", topic_part(service)),
            "state_topic": self.state_topic(host, service),
            "json_attributes_topic": self.state_topic(host, service),
            "availability_topic": self.availability_topic(host),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device_class": "firmware",
            "entity_category": "diagnostic",
            "device": {
                "identifiers": [format!("lookout_{}", topic_part(host))],
                "name": format!("lookout on {host}"),
                "manufacturer": "lookout",
                "model": "compose image updater",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
            "origin": {"name": "lookout", "sw_version": env!("CARGO_PKG_VERSION")},
        });
        if self.install {
            doc["command_topic"] = json!(self.install_topic(host, service));
            doc["payload_install"] = json!(INSTALL);
        }
        doc
    }

    /// The service an install command on `topic` is for, among `services`.
    pub(crate) fn install_target<'a>(
        &self,
        host: &str,
        topic: &str,
        services: &'a [String],
    ) -> Option<&'a String> {
        services
            .iter()
            .find(|s| self.install_topic(host, s) == topic)
    }
}

/// The payload of an install command (Home Assistant's `payload_install`).
pub const INSTALL: &str = "install";

/// A topic level, or a name used as one: no wildcards, no `/`.
fn topic_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '/' || c == '+' || c == '#' || c.is_control() || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn check_topic(t: &str) -> Result<(), &'static str> {
    if t.is_empty() || t.len() > 200 {
        Err("must be 1 to 200 characters")
    } else if t.contains(['+', '#']) || t.chars().any(char::is_control) {
        Err("must not contain + or # or control characters")
    } else {
        Ok(())
    }
}

/// What lookout last knew of one service, published retained on its state topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// The image that runs, as configured (`nginx:1.27.0`).
    pub image: Option<String>,
    /// A newer image lookout would move to, if any.
    pub candidate: Option<String>,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub in_progress: bool,
    pub updated_at: Option<String>,
}

impl ServiceState {
    /// The retained JSON: Home Assistant's update fields and lookout's own. Pure.
    pub fn json(&self, service: &str) -> Value {
        let installed = self.image.as_deref().map(version_of);
        let latest = match (&self.candidate, &installed) {
            (Some(c), Some(i)) => {
                let v = version_of(c);
                // The same tag with another digest (a `digest` policy): say so, so that the
                // versions differ.
                if &v == i {
                    format!("{v} (new digest)")
                } else {
                    v
                }
            }
            (Some(c), None) => version_of(c),
            (None, i) => i.clone().unwrap_or_default(),
        };
        let summary = match (&self.result, &self.reason) {
            (Some(r), Some(why)) if !why.is_empty() => format!("{r}: {why}"),
            (Some(r), _) => r.clone(),
            _ => String::new(),
        };
        json!({
            "installed_version": installed,
            "latest_version": if latest.is_empty() { Value::Null } else { json!(latest) },
            "title": service,
            "release_summary": truncate(&summary, 255),
            "in_progress": self.in_progress,
            "service": service,
            "image": self.image,
            "candidate": self.candidate,
            "result": self.result,
            "reason": self.reason,
            "updated_at": self.updated_at,
        })
    }

    /// What `event` changes; `false` when it says nothing about this service's state.
    fn apply(&mut self, event: &Event, at: &str) -> bool {
        match event {
            Event::UpdateAvailable(u) => {
                self.image.get_or_insert_with(|| u.old_image.clone());
                self.candidate = Some(u.new_image.clone());
            }
            Event::UpdateStarted(u) => {
                self.image = Some(u.old_image.clone());
                self.candidate = Some(u.new_image.clone());
                self.in_progress = true;
            }
            Event::Updated(u) => {
                self.image = Some(u.new_image.clone());
                self.candidate = None;
                self.in_progress = false;
                self.result = Some(EventKind::Updated.as_str().to_owned());
                self.reason = None;
            }
            Event::RolledBack { update: u, reason } => {
                self.image = Some(u.old_image.clone());
                self.candidate = Some(u.new_image.clone());
                self.in_progress = false;
                self.result = Some(EventKind::RolledBack.as_str().to_owned());
                self.reason = Some(crate::redact::redact(reason).into_owned());
            }
            Event::UpdateFailed {
                update: u, reason, ..
            } => {
                self.image = Some(u.old_image.clone());
                self.candidate = Some(u.new_image.clone());
                self.in_progress = false;
                self.result = Some(EventKind::UpdateFailed.as_str().to_owned());
                self.reason = Some(crate::redact::redact(reason).into_owned());
            }
            _ => return false,
        }
        self.updated_at = Some(at.to_owned());
        true
    }

    /// A pass's word on this service.
    fn apply_pass(&mut self, s: &PassService, at: &str) {
        if s.installed.is_some() {
            self.image.clone_from(&s.installed);
        }
        self.candidate = match s.result.as_str() {
            "up_to_date" | "updated" => None,
            _ => s.candidate.clone().or_else(|| self.candidate.take()),
        };
        if s.result == "updated" {
            self.image = s.candidate.clone().or_else(|| self.image.take());
        }
        self.result = Some(s.result.clone());
        self.reason = s
            .reason
            .as_deref()
            .map(|r| crate::redact::redact(r).into_owned());
        self.in_progress = false;
        self.updated_at = Some(at.to_owned());
    }
}

/// The version part of an image reference: its tag (and digest), else the reference.
pub(crate) fn version_of(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t.to_owned());
    match (tag, digest) {
        (Some(t), Some(d)) => format!("{t}@{}", short_digest(d)),
        (Some(t), None) => t,
        (None, Some(d)) => short_digest(d),
        (None, None) => "latest".to_owned(),
    }
}

fn short_digest(d: &str) -> String {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    hex.chars().take(12).collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An install command heard on the broker: the daemon runs it ([`crate::daemon`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRequest {
    pub service: String,
    /// The channel it came through.
    pub channel: String,
}

/// Everything the MQTT worker runs with.
pub(crate) struct Worker {
    pub name: String,
    pub mqtt: Mqtt,
    pub host: String,
    /// Configured service names: each gets a state topic and discovery document.
    pub services: Vec<String>,
    pub rx: mpsc::Receiver<super::deliver::Note>,
    pub installs: Option<mpsc::Sender<InstallRequest>>,
    pub metrics: Metrics,
    pub timeout: Duration,
}

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Incoming packets larger than this are refused by the client (install commands are tiny).
const MAX_INCOMING: usize = 64 * 1024;

impl Worker {
    fn count(&self, result: &str) {
        self.metrics
            .notify_deliveries
            .with_label_values(&[self.name.as_str(), result])
            .inc();
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let id = self
            .mqtt
            .client_id
            .clone()
            // One id per channel: a broker closes the older of two connections with one id.
            .unwrap_or_else(|| format!("lookout-{}-{}", topic_part(&self.host), self.name));
        let mut o = MqttOptions::new(id, self.mqtt.host.clone(), self.mqtt.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(MAX_INCOMING, 1024 * 1024);
        o.set_last_will(LastWill::new(
            self.mqtt.availability_topic(&self.host),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &self.mqtt.username {
            let password = self
                .mqtt
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            o.set_credentials(user.clone(), password);
        }
        if self.mqtt.tls {
            let config = client_tls(&self.mqtt.trust)?;
            o.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
            ));
        }
        Ok(o)
    }

    /// Connects, publishes availability, discovery and every known state on each connect,
    /// then each event and pass; reconnects with backoff. Ends when the queue closes.
    pub(crate) async fn run(mut self) {
        let options = match self.options() {
            Ok(o) => o,
            Err(error) => {
                tracing::error!(channel = %self.name, %error, "cannot set up the MQTT connection; nothing will be published");
                while self.rx.recv().await.is_some() {
                    self.count("failed");
                }
                return;
            }
        };
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let (conn_tx, mut conn_rx) = mpsc::channel::<Connection>(64);
        let name = self.name.clone();
        let poller = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(500);
                        if conn_tx.send(Connection::Up).await.is_err() {
                            return;
                        }
                    }
                    Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let payload = String::from_utf8_lossy(&p.payload).into_owned();
                        if conn_tx
                            .send(Connection::Message(p.topic, payload))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let error = crate::redact::redact(&error.to_string()).into_owned();
                        tracing::warn!(channel = %name, %error, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed; reconnecting");
                        if conn_tx.send(Connection::Down).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
        let mut states: BTreeMap<String, ServiceState> = self
            .services
            .iter()
            .map(|s| (s.clone(), ServiceState::default()))
            .collect();
        // The first connection is waited for (a one-shot `lookout update` sends its few
        // events right away, then closes the queue).
        let mut connected = false;
        if let Ok(Some(Connection::Up)) = tokio::time::timeout(self.timeout, conn_rx.recv()).await {
            connected = true;
            self.on_connect(&client, &states).await;
        }
        loop {
            tokio::select! {
                note = self.rx.recv() => {
                    let Some(note) = note else { break };
                    self.handle(&client, &mut states, note, connected).await;
                }
                conn = conn_rx.recv() => match conn {
                    Some(Connection::Up) => {
                        connected = true;
                        self.on_connect(&client, &states).await;
                    }
                    Some(Connection::Down) => connected = false,
                    Some(Connection::Message(topic, payload)) => self.on_message(&topic, &payload).await,
                    None => break,
                },
            }
        }
        let _ = client
            .publish(
                self.mqtt.availability_topic(&self.host),
                QoS::AtLeastOnce,
                true,
                "offline",
            )
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
        // The event loop sends what is queued, then the disconnect, and returns.
        let abort = poller.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), poller)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    async fn publish(
        &self,
        client: &AsyncClient,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> bool {
        match tokio::time::timeout(
            self.timeout,
            client.publish(topic, QoS::AtLeastOnce, retain, payload),
        )
        .await
        {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(channel = %self.name, %error, "MQTT publish failed");
                false
            }
            Err(_) => {
                tracing::warn!(channel = %self.name, "MQTT publish did not go out in time");
                false
            }
        }
    }

    async fn on_connect(&self, client: &AsyncClient, states: &BTreeMap<String, ServiceState>) {
        tracing::info!(channel = %self.name, broker = %self.mqtt.host, port = self.mqtt.port, "MQTT connected");
        let host = &self.host;
        self.publish(
            client,
            self.mqtt.availability_topic(host),
            true,
            b"online".to_vec(),
        )
        .await;
        if self.mqtt.install {
            let filter = format!("{}/+/install", self.mqtt.base(host));
            if let Err(error) = client.subscribe(filter, QoS::AtLeastOnce).await {
                tracing::warn!(channel = %self.name, %error, "cannot subscribe to the install topics");
            }
        }
        for (service, state) in states {
            if self.mqtt.discovery {
                let doc = self.mqtt.discovery(host, service).to_string().into_bytes();
                self.publish(client, self.mqtt.discovery_topic(host, service), true, doc)
                    .await;
            }
            if *state != ServiceState::default() {
                let body = state.json(service).to_string().into_bytes();
                self.publish(client, self.mqtt.state_topic(host, service), true, body)
                    .await;
            }
        }
    }

    async fn on_message(&self, topic: &str, payload: &str) {
        let Some(service) = self.mqtt.install_target(&self.host, topic, &self.services) else {
            return;
        };
        if !self.mqtt.install || payload.trim() != INSTALL {
            tracing::warn!(channel = %self.name, service = %service, "MQTT message on an install topic that is not {INSTALL:?}; ignored");
            return;
        }
        let Some(installs) = &self.installs else {
            tracing::warn!(channel = %self.name, service = %service, "install asked for over MQTT, but only `lookout run` takes install commands");
            return;
        };
        tracing::info!(channel = %self.name, service = %service, "install asked for over MQTT");
        let request = InstallRequest {
            service: service.clone(),
            channel: self.name.clone(),
        };
        if installs.try_send(request).is_err() {
            tracing::warn!(channel = %self.name, service = %service, "too many install commands waiting; this one is dropped");
        }
    }

    async fn handle(
        &self,
        client: &AsyncClient,
        states: &mut BTreeMap<String, ServiceState>,
        note: super::deliver::Note,
        connected: bool,
    ) {
        let at = jiff::Timestamp::now().to_string();
        let host = &self.host;
        match note {
            super::deliver::Note::Event(event, message) => {
                let Some(u) = event.update() else { return };
                let service = u.service.clone();
                let changed = states
                    .get_mut(&service)
                    .is_some_and(|s| s.apply(&event, &at));
                if !connected {
                    self.count("failed");
                    tracing::warn!(channel = %self.name, id = %message.id, "MQTT broker not connected; the state is published once it is");
                    return;
                }
                let mut ok = self
                    .publish(
                        client,
                        self.mqtt.event_topic(host, &service),
                        false,
                        message.event_json.to_string().into_bytes(),
                    )
                    .await;
                if changed {
                    if let Some(state) = states.get(&service) {
                        ok &= self
                            .publish(
                                client,
                                self.mqtt.state_topic(host, &service),
                                true,
                                state.json(&service).to_string().into_bytes(),
                            )
                            .await;
                    }
                }
                self.count(if ok { "delivered" } else { "failed" });
            }
            super::deliver::Note::PassStarted => {}
            super::deliver::Note::Pass(services) => {
                for s in services.iter() {
                    let Some(state) = states.get_mut(&s.service) else {
                        continue;
                    };
                    let before = state.clone();
                    state.apply_pass(s, &at);
                    if connected && (*state != before || before.updated_at.is_none()) {
                        let body = state.json(&s.service).to_string().into_bytes();
                        self.publish(client, self.mqtt.state_topic(host, &s.service), true, body)
                            .await;
                    }
                }
            }
        }
    }
}

enum Connection {
    Up,
    Down,
    Message(String, String),
}

/// A rustls client configuration (ring) that trusts the system's roots and `trust.ca_file`,
/// or any certificate with `trust.skip_verify`.
pub(crate) fn client_tls(trust: &TlsTrust) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    if trust.skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &trust.ca_file {
        let pem = trust.read_ca()?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "tls_ca_file {}: holds no PEM certificate",
                path.display()
            ));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `tls_skip_verify`: every certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
